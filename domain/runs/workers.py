"""Work done outside the run: a `tool` node's tool and a `remote` node's worker answer."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from domain.definitions import RemoteNode, ToolNode
from domain.errors import DefinitionInvalid, GraphEditRejected
from domain.runs.base import RunBase


class Workers(RunBase):
    """Recording what tools and remote workers returned."""

    def complete_tool_node(
        self, node_id: str, attempt: int, ok: bool, content: str, *, now: datetime
    ) -> None:
        """Record what a `tool` node's tool returned (JSON output when it is JSON), or its
        error (class `task`)."""
        self.check_node_is_running(node_id, attempt)
        node = self.spec.nodes[node_id]
        assert isinstance(node, ToolNode)
        if not ok:
            self._fail_node(node_id, attempt, {"class": "task", "message": content}, now=now)
            return
        try:
            output: Any = json.loads(content)
        except ValueError:
            output = content
        self._complete_with_output(node_id, node, output, now=now)
        self.advance(now=now)

    def complete_remote(
        self,
        node_id: str,
        attempt: int,
        status: str,
        output: Any,
        error: dict[str, Any] | None,
        edits: list[Any],
        actor: str,
        *,
        now: datetime,
        allowed_hosts: frozenset[str],
    ) -> None:
        """Record what a remote worker answered. `ok`: the output (after the graph edits it
        returned, if the node accepts edits); `task_error`: the work failed (class `task`);
        `infra_error`: the worker could not do it now (class `retryable`, retried)."""
        self.check_node_is_running(node_id, attempt)
        node = self.spec.nodes[node_id]
        assert isinstance(node, RemoteNode)
        message = (error or {}).get("message") or "no message"
        if status == "task_error":
            self._fail_node(node_id, attempt, {"class": "task", "message": message}, now=now)
            return
        if status == "infra_error":
            self._fail_node(node_id, attempt, {"class": "retryable", "message": message}, now=now)
            return
        if edits and not node.accept_edits:
            self._fail_node(
                node_id,
                attempt,
                {
                    "class": "task",
                    "message": (
                        f"the worker returned graph edits, but node {node_id!r} does not "
                        "accept them (set accept_edits: true)"
                    ),
                },
                now=now,
            )
            return
        if edits:
            try:
                why = f"returned by the {node.capability} worker"
                self.edit_graph(edits, actor, why, now=now, allowed_hosts=allowed_hosts)
            except (DefinitionInvalid, GraphEditRejected) as invalid:
                self._fail_node(
                    node_id,
                    attempt,
                    {
                        "class": "task",
                        "message": f"the worker's graph edits were refused: {invalid}",
                    },
                    now=now,
                )
                return
        self._complete_with_output(node_id, node, output, now=now)
        self.advance(now=now)
