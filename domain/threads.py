"""The Thread aggregate: a chat with messages and branches, optionally bound to a run.

A thread is bound to a run's `chat` node (the node opened it; completing the thread
completes the node), driven by a conversation workflow (each user message advances a
run of it), or free, answered in its tenant's AI mode. How a thread answers is fixed when
it opens (`replies`): `llm` (one model reply per user message, made by the worker from
the recorded `ReplyRequested`), `run` (a run of a workflow answers: conversation
workflows and the orchestrator mode) or `none` (people only).
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.definitions import HEDDLE_NAMESPACE
from domain.errors import ThreadInvalid
from domain.llm import LlmRequest, LlmResult, Message

Replies = Literal["llm", "run", "none"]
ThreadStatus = Literal["open", "completed"]


def chat_thread_id(run_id: UUID, node_id: str, attempt: int) -> UUID:
    """The thread of one attempt of a run's `chat` node: the same on every redelivery."""
    return uuid5(HEDDLE_NAMESPACE, f"thread/{run_id}/{node_id}/{attempt}")


def thread_id_for(tenant: str, command_id: str) -> UUID:
    """The thread id an `OpenThread` without `thread_id` gets."""
    return uuid5(HEDDLE_NAMESPACE, f"thread/{tenant}/{command_id}")


def conversation_run_id(thread_id: UUID, number: int) -> UUID:
    """The id of the `number`th run that answers a thread."""
    return uuid5(HEDDLE_NAMESPACE, f"conversation/{thread_id}/{number}")


class Thread(Aggregate):
    """A chat: its messages, its branches, how it replies, and where it is bound."""

    @staticmethod
    def create_id(thread_id: UUID, **_: Any) -> UUID:
        return thread_id

    @event("Opened")
    def __init__(
        self,
        thread_id: UUID,
        tenant: str,
        actor: str,
        title: str,
        replies: Replies,
        reply: dict[str, Any] | None = None,
        branches: dict[str, dict[str, Any]] | None = None,
        binding: dict[str, Any] | None = None,
        workflow: str | None = None,
    ) -> None:
        """`reply`: the model settings of `llm` replies (model, system, temperature,
        max_tokens, options, credential, stream), or of the orchestrator's agent.
        `binding`: the run, node and attempt of the `chat` node that opened it.
        `workflow`: the conversation workflow whose runs answer."""
        self.tenant = tenant
        self.title = title
        self.replies: Replies = replies
        self.reply = reply
        self.branches = branches or {}
        self.binding = binding
        self.workflow = workflow
        self.status: ThreadStatus = "open"
        self.messages: list[dict[str, Any]] = []
        self.pending: dict[str, dict[str, Any]] = {}
        self.run_id: UUID | None = None
        self.runs = 0
        self.output: dict[str, Any] | None = None
        self.outcome: str | None = None

    # Decisions

    def post(self, content: str, author: str, branch: str | None = None) -> dict[str, Any]:
        """A person's message. With `branch`, the branch answers: a fixed reply, a model
        reply to its prompt, or a saved action (recorded here as `BranchTaken`; the handler
        applies it to the run). Without, the thread answers as it was opened to: a model
        reply is requested (`llm`), or the handler hands the message to a run (`run`).
        Returns the message."""
        self.check_open()
        chosen = None
        if branch is not None:
            chosen = self.branches.get(branch)
            if chosen is None:
                known = ", ".join(self.branches) or "none"
                raise ThreadInvalid(
                    f"thread {self.id} has no branch {branch!r} (its branches: {known})"
                )
        message_id = f"m{len(self.messages) + 1}"
        self._message_posted(message_id, "user", content, author, branch)
        if chosen is None:
            if self.replies == "llm":
                self._reply_requested(f"r-{message_id}", message_id, branch)
        elif chosen.get("reply") is not None:
            self._message_posted(
                f"m{len(self.messages) + 1}",
                "assistant",
                chosen["reply"],
                "heddle",
                branch,
                reply_to=message_id,
                provider="fixed",
            )
        elif chosen.get("prompt") is not None:
            model = chosen.get("model") or (self.reply or {}).get("model")
            self._reply_requested(
                f"r-{message_id}", message_id, branch, model=model, instruction=chosen["prompt"]
            )
        else:
            self._branch_taken(message_id, branch, chosen)
        return self.message(message_id)

    def request(
        self, model: str | None = None, instruction: str | None = None, upto: str | None = None
    ) -> LlmRequest:
        """The model call that answers the conversation so far (up to and including the
        message `upto`): the system prompt, every message, and a branch's instruction last."""
        settings = self.reply or {}
        messages = []
        if settings.get("system"):
            messages.append(Message(role="system", content=settings["system"]))
        said = self.messages
        if upto is not None:
            said = said[: next(i for i, m in enumerate(said) if m["message_id"] == upto) + 1]
        messages += [
            Message(role=m["role"], content=m["content"])
            for m in said
            if m["role"] in ("user", "assistant")
        ]
        if instruction:
            messages.append(Message(role="user", content=instruction))
        return LlmRequest(
            model=model or settings["model"],
            messages=messages,
            temperature=settings.get("temperature"),
            max_tokens=settings.get("max_tokens"),
            options=settings.get("options", {}),
            credential=settings.get("credential"),
        )

    def reply_request(self, reply_id: str) -> LlmRequest:
        """The model call a reply still to be made answers: the conversation up to the
        message it answers, built from the messages (each stored once, in its own
        `MessagePosted`), or as recorded by a `ReplyRequested` of before that."""
        pending = self.pending[reply_id]
        if "request" in pending:
            return LlmRequest.model_validate(pending["request"])
        return self.request(pending["model"], pending["instruction"], upto=pending["message_id"])

    def awaits(self, reply_id: str) -> bool:
        """True while the reply is still to be made (a redelivered request is not)."""
        return reply_id in self.pending

    def record_reply(self, reply_id: str, result: LlmResult) -> None:
        """The model answered: the answer is the assistant's message."""
        self.check_awaits(reply_id)
        pending = self.pending[reply_id]
        self._message_posted(
            f"m{len(self.messages) + 1}",
            "assistant",
            result.text,
            "heddle",
            pending["branch"],
            reply_to=pending["message_id"],
            reply_id=reply_id,
            provider=result.provider,
            model=result.model,
            usage=result.usage.model_dump(),
            cost_usd=result.cost_usd,
        )

    def fail_reply(self, reply_id: str, error: dict[str, Any]) -> None:
        """No answer came (after the retry layer gave up): the thread says so."""
        self.check_awaits(reply_id)
        self._reply_failed(reply_id, error)

    def say(
        self,
        message_id: str,
        content: str,
        source: dict[str, Any],
        provider: str | None = None,
        model: str | None = None,
    ) -> bool:
        """An assistant message from the run that answers this thread; once per id."""
        if any(m["message_id"] == message_id for m in self.messages):
            return False
        last_user = next((m for m in reversed(self.messages) if m["role"] == "user"), None)
        self._message_posted(
            message_id,
            "assistant",
            content,
            "heddle",
            None,
            reply_to=last_user["message_id"] if last_user else None,
            provider=provider,
            model=model,
            source=source,
        )
        return True

    def next_run(self) -> UUID:
        """A new run answers the thread (the first, or the last one had finished)."""
        run_id = conversation_run_id(self.id, self.runs + 1)
        self._run_attached(run_id)
        return run_id

    def complete(
        self, actor: str, data: dict[str, Any], outcome: str = "completed"
    ) -> dict[str, Any]:
        """Close the thread; returns its output: the transcript and `data`."""
        self.check_open(completing=True)
        output = {
            "thread_id": str(self.id),
            "messages": [
                {"role": m["role"], "content": m["content"], "author": m["author"]}
                for m in self.messages
            ],
            "data": data,
        }
        self._completed(actor, output, outcome)
        return output

    def message(self, message_id: str) -> dict[str, Any]:
        return next(m for m in self.messages if m["message_id"] == message_id)

    def check_open(self, completing: bool = False) -> None:
        if self.status == "open":
            return
        if completing:
            raise ThreadInvalid(f"thread {self.id} is {self.status} already ({self.outcome})")
        raise ThreadInvalid(f"thread {self.id} is {self.status}: it takes no more messages")

    def check_awaits(self, reply_id: str) -> None:
        if not self.awaits(reply_id):
            raise ThreadInvalid(f"thread {self.id} awaits no reply {reply_id!r}")

    # Facts

    @event("MessagePosted")
    def _message_posted(
        self,
        message_id: str,
        role: Literal["user", "assistant"],
        content: str,
        author: str,
        branch: str | None,
        reply_to: str | None = None,
        reply_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        usage: dict[str, Any] | None = None,
        cost_usd: float | None = None,
        source: dict[str, Any] | None = None,
    ) -> None:
        """`source`: the run and node whose answer this is (conversation runs)."""
        self.messages.append(
            {
                "message_id": message_id,
                "role": role,
                "content": content,
                "author": author,
                "branch": branch,
                "provider": provider,
                "model": model,
            }
        )
        if reply_id is not None:
            self.pending.pop(reply_id, None)

    @event("ReplyRequested")
    def _reply_requested(
        self,
        reply_id: str,
        message_id: str,
        branch: str | None,
        request: dict[str, Any] | None = None,
        model: str | None = None,
        instruction: str | None = None,
    ) -> None:
        """A reply to `message_id` is to be made: by `model` (else the thread's), to the
        conversation up to that message, and `instruction` (a branch's prompt). Not the
        transcript itself: each message is stored once, by its `MessagePosted` (`request`
        is the transcript only in events recorded before that)."""
        asked = {"request": request} if request else {"model": model, "instruction": instruction}
        self.pending[reply_id] = {"message_id": message_id, "branch": branch, **asked}

    @event("ReplyFailed")
    def _reply_failed(self, reply_id: str, error: dict[str, Any]) -> None:
        self.pending.pop(reply_id, None)

    @event("BranchTaken")
    def _branch_taken(self, message_id: str, branch: str | None, action: dict[str, Any]) -> None:
        pass

    @event("RunAttached")
    def _run_attached(self, run_id: UUID) -> None:
        self.run_id = run_id
        self.runs += 1

    @event("Completed")
    def _completed(self, actor: str, output: dict[str, Any], outcome: str) -> None:
        self.status = "completed"
        self.outcome = outcome
        self.output = output
        self.pending = {}


__all__ = ["Thread", "chat_thread_id", "conversation_run_id", "thread_id_for"]
