"""Chat nodes: a thread per node attempt; the run renders what the thread needs and pays
for the model's replies in it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.definitions import ChatNode
from domain.llm import LlmResult
from domain.runs.base import RunBase
from domain.templates import render
from domain.threads import chat_thread_id


class Chat(RunBase):
    """A chat node's thread and its outcome."""

    def complete_chat(
        self, node_id: str, attempt: int, actor: str, output: Any, *, now: datetime
    ) -> None:
        """A `chat` node's thread was completed: the node completes with its output."""
        self.check_node_is_running(node_id, attempt)
        node = self.spec.nodes[node_id]
        assert isinstance(node, ChatNode)
        self._task_completed(node_id, actor, {"thread_id": output["thread_id"]})
        self._complete_with_output(node_id, node, output, now=now)
        self.advance(now=now)

    def record_chat_reply(
        self, node_id: str, attempt: int, reply_id: str, result: LlmResult
    ) -> None:
        """A model replied in the thread of a running `chat` node: the run pays for it."""
        self.check_node_is_running(node_id, attempt)
        self._chat_reply_completed(node_id, attempt, reply_id, result.model_dump(mode="json"))

    def _chat_for(self, node_id: str, node: ChatNode, attempt: int) -> dict[str, Any]:
        """What a started `chat` node hands its thread: the templates rendered over the run
        now, so the thread needs nothing else of the run."""
        context = self.activation()
        thread_id = str(chat_thread_id(self.id, node_id, attempt))
        title = render(node.title, context) if node.title else f"{self.workflow}: {node_id}"
        reply = None
        if node.model:
            reply = {
                "model": node.model,
                "system": render(node.system, context) if node.system else None,
                "temperature": node.temperature,
                "max_tokens": node.max_tokens,
                "options": node.options,
                "credential": node.credential,
                "stream": node.stream,
            }
        branches = {}
        for name, branch in node.branches.items():
            chosen = branch.model_dump(exclude_defaults=True)
            for field in ("reply", "prompt"):
                if field in chosen:
                    chosen[field] = render(chosen[field], context)
            branches[name] = {"label": branch.label or name, **chosen}
        return {
            "thread_id": thread_id,
            "title": title,
            "reply": reply,
            "branches": branches,
            "greeting": render(node.greeting, context) if node.greeting else None,
            "task": {
                "type": "chat",
                "title": title,
                "instructions": "",
                "assignee": render(node.assignee, context) if node.assignee else None,
                "role": node.role,
                "priority": node.priority,
                "due_at": None,
                "form": {"type": "object"},
                "value": None,
                "thread_id": thread_id,
            },
        }
