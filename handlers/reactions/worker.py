"""What the run worker needs (`WorkerPorts`) and what a batch of events gives it to do
(`find_work`: model calls, agents, tools, remote tasks, extractions, run-level model
requests, child runs, chat threads); `handlers/reactions/pipeline.py` does the work.

The broker and the store are behind the ports, so a test drives the worker with the
in-memory store and a scripted provider.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Recording, Tracking

from domain.http_tools import HttpTool
from domain.llm import ToolCall
from domain.messages import CommandEnvelope, RunEvent, TokenDelta
from domain.runs import WorkflowRun
from handlers.causes import Cause
from handlers.reactions.agents import agents_to_resume
from handlers.reactions.children import REACTS_TO, subworkflow_commands
from handlers.reactions.customers import customer_commands
from handlers.reactions.events import WORKER_EVENTS, decode_events
from handlers.reactions.extraction import (
    Extraction,
    ReadDocument,
    extractions_due,
)
from handlers.reactions.llm_requests import (
    LlmRequestDue,
    llm_requests_due,
)
from handlers.reactions.model_calls import (
    CompleteLlm,
    Decide,
    LlmCall,
    PublishToken,
    llm_calls_due,
)
from handlers.reactions.remote import capabilities_published, remote_tasks_due
from handlers.reactions.threads import (
    close_chat_threads,
    open_chat_threads,
    post_run_answers,
    replies_due,
    threads_answered,
)
from handlers.reactions.tools import ToolNodeCall, tool_nodes_due
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork

log = logging.getLogger("heddle")


class TrackedPositions(Protocol):
    """The positions a consumer has recorded, per partition (infra/store.py `Positions`)."""

    consumer: str

    def fresh(self, records: list[Record]) -> list[Record]: ...

    def advance(self, trackings: list[Tracking]) -> None: ...


class RunDeclaredTool(Protocol):
    """Runs a tool call: an HTTP tool of the run's definition (given), or a registered one;
    an HTTP tool sends `key` as its `Idempotency-Key`."""

    def __call__(
        self, declared: dict[str, HttpTool], call: ToolCall, key: str | None = None
    ) -> Awaitable[tuple[bool, str]]: ...


SendCommand = Callable[[CommandEnvelope, str], Awaitable[None]]
"""Publishes a command, keyed by the given key."""
SendTasks = Callable[[list[dict[str, Any]]], Awaitable[None]]
"""Publishes the tasks of `remote` nodes to their capabilities' topics."""
CreateTaskTopics = Callable[[set[str]], Awaitable[None]]
"""Makes sure the task topics of these capabilities exist."""
OwnedRecords = Callable[[list[Recording[UUID]]], list[Record]]
"""The events just saved whose partition this worker reads now, as the records it will
read (eager continuation); by default none."""
WORKS_ON = frozenset({*WORKER_EVENTS, *REACTS_TO, RunEvent.TOOL_CALL_COMPLETED})
"""The events a batch can find work in."""


class Traced(Protocol):
    """A span of work (infra/tracing.py `span`): the child of `parent` (a W3C
    `traceparent`); yields the `traceparent` of what is recorded inside it."""

    def __call__(
        self, name: str, parent: str | None = None, **attributes: Any
    ) -> AbstractContextManager[str | None]: ...


@contextmanager
def untraced(name: str, parent: str | None = None, **attributes: Any) -> Iterator[str | None]:
    yield parent


def no_records(recordings: list[Recording[UUID]]) -> list[Record]:
    return []


def no_outage(error: BaseException) -> bool:
    return False


@dataclass(frozen=True)
class WorkerPorts:
    """What the run worker needs from outside: the store (a unit of work per batch, its
    tracked positions, the thread that decides), the one retry layer for model calls,
    tools, documents, and where tokens, commands and tasks go."""

    unit_of_work: Callable[[], UnitOfWork]
    positions: TrackedPositions
    decide: Decide[Any]
    complete: CompleteLlm
    run_tool: RunDeclaredTool
    read_document: ReadDocument
    publish_token: PublishToken
    send_command: SendCommand
    send_tasks: SendTasks
    create_task_topics: CreateTaskTopics
    owned_records: OwnedRecords = no_records
    is_outage: Callable[[BaseException], bool] = no_outage
    """Whether a failure is an outage of the store or the broker (waited out, for as long
    as it lasts) rather than of the work's own."""
    traced: Traced = untraced


@dataclass
class WorkerBatch:
    """What one batch of events gives the run worker to do, found in one store session."""

    commands: list[tuple[CommandEnvelope, str]]
    extractions: list[Extraction]
    requests: list[LlmRequestDue]
    capabilities: set[str]
    calls: list[LlmCall] = field(default_factory=list)
    tools: list[ToolNodeCall] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    threads: dict[UUID, UUID] = field(default_factory=dict)
    declared: dict[UUID, dict[str, HttpTool]] = field(default_factory=dict)
    """The HTTP tools each run's definition declares, for its tool and agent calls."""
    causes: dict[UUID, Cause] = field(default_factory=dict)
    """Per run, the event that called for its work (what the work records is caused by)."""


def find_work(records: list[Record], ports: WorkerPorts) -> WorkerBatch:
    """Decide what a batch read from the broker calls for (on the thread that owns the
    aggregates), leaving out records at or below the positions already recorded."""
    return work_for(ports.positions.fresh(records), ports)


def work_for(fresh: list[Record], ports: WorkerPorts) -> WorkerBatch:
    """Decide what these events call for (on the thread that owns the aggregates)."""
    uow = ports.unit_of_work()
    events = decode_events(fresh, WORKS_ON)
    causes = {UUID(e["aggregate_id"]): Cause.of_event(e) for e in events}
    batch = WorkerBatch(
        subworkflow_commands(events, uow) + customer_commands(events, uow),
        extractions_due(events, uow),
        llm_requests_due(events, uow), capabilities_published(events),
    )  # fmt: skip
    # Idempotent by themselves (a thread opens once, an answer is posted once):
    # saved now, so that a batch with no call still records them.
    open_chat_threads(events, uow)
    post_run_answers(events, uow)
    close_chat_threads(events, uow)
    uow.save()
    batch.calls = llm_calls_due(events, uow) + agents_to_resume(events, uow)
    batch.calls += replies_due(events, uow)
    batch.tools = tool_nodes_due(events, uow)
    agents = {c.run_id for c in batch.calls if c.kind == "agent"}
    for run_id in agents | {t.run_id for t in batch.tools}:
        run = uow.get(run_id, WorkflowRun)
        assert run is not None  # its call was found in it just now
        batch.declared[run_id] = run.spec.tools
    batch.tasks = remote_tasks_due(events, uow)
    batch.threads = threads_answered(batch.calls, uow)
    batch.causes = causes
    return batch


def publish_to_threads(publish: PublishToken, threads: dict[UUID, UUID], delta: TokenDelta) -> None:
    """Publish a delta; one of a run that answers a thread goes to the thread too."""
    publish(delta)
    thread_id = threads.get(delta.run_id)
    if thread_id is not None:
        publish(dataclasses.replace(delta, run_id=thread_id, thread=True))
