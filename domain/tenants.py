"""Tenant settings: how a tenant's free threads (no workflow, no chat node) are answered.

`simple`: one model reply per user message. `orchestrator`: an agent with the tenant's
tools answers each message, as a one-node run (the `agent` node of `WorkflowRun`). A
tenant that configured nothing answers nothing: its threads are for people only.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.definitions import HEDDLE_NAMESPACE, WorkflowSpec, parse_definition
from domain.errors import DefinitionInvalid, Problem
from domain.tools import TOOLS

ORCHESTRATOR = "orchestrator"
"""The workflow name of the runs that answer a thread in orchestrator mode."""
NO_AI: dict[str, Any] = {"ai_mode": "simple", "model": None}
"""The settings of a tenant that configured nothing: no model, so no AI replies."""
TRANSCRIPT = (
    "{% for m in input.messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    "Answer the user's last message."
)


def orchestrator(ai: dict[str, Any]) -> WorkflowSpec:
    """The one-node workflow whose run answers a message in orchestrator mode `ai`."""
    node = {
        "kind": "agent",
        "model": ai["model"],
        "prompt": TRANSCRIPT,
        "tools": ai.get("tools", []),
        "max_steps": ai.get("max_steps", 8),
        "output": "answer",
        **{k: ai[k] for k in ("system", "temperature", "max_tokens", "credential") if ai.get(k)},
        **({"options": ai["options"]} if ai.get("options") else {}),
    }
    return parse_definition({"name": ORCHESTRATOR, "start": "answer", "nodes": {"answer": node}})


def settings_id(tenant: str) -> UUID:
    return uuid5(HEDDLE_NAMESPACE, f"tenant-settings/{tenant}")


class TenantSettings(Aggregate):
    """A tenant's AI mode and its configuration (model, system prompt, tools)."""

    @staticmethod
    def create_id(tenant: str) -> UUID:
        return settings_id(tenant)

    @event("Created")
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.ai: dict[str, Any] = dict(NO_AI)

    def configure(self, ai: dict[str, Any], actor: str) -> None:
        """Set the AI mode; a mode that answers needs a model, and every tool must exist."""
        problems = []
        if ai.get("model") is None:
            problems.append(Problem("model", f"the {ai['ai_mode']} mode needs a model"))
        for index, tool in enumerate(ai.get("tools", [])):
            if TOOLS.get(tool) is None:
                known = ", ".join(TOOLS.names())
                problems.append(
                    Problem(f"tools[{index}]", f"unknown tool {tool!r} (known: {known})")
                )
        if ai["ai_mode"] == "simple" and ai.get("tools"):
            problems.append(Problem("tools", "tools need the orchestrator mode"))
        if problems:
            raise DefinitionInvalid(problems)
        self._configured(ai, actor)

    @event("Configured")
    def _configured(self, ai: dict[str, Any], actor: str) -> None:
        self.ai = ai
