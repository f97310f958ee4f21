"""The run worker as a pipeline: reading events never waits for model calls.

`Pipeline.take` decides what a batch of events calls for (on the thread that owns the
aggregates), sends the commands and tasks it calls for, and starts each piece of work
(a model call, an agent, a tool node, an extraction, a run-level model request) as a task
of its own. It returns at once with a future that is done when every outcome of the batch
is saved, so the consumer can read the next batch while the calls are in flight and commit
a partition only up to batches whose outcomes are saved.

Outcomes are saved as they come (those that finish during a write go into the next one),
each run decided on its own: a run that another writer changed meanwhile is decided again on its
stored state (`handlers.unit_of_work.decide_and_save`), and a run whose outcome cannot be applied
is left out of the write, so no other run of it waits or repeats anything. A piece of work
already in flight in this process (an event delivered again) is not started twice.

Eager continuation: when a save records events that call for more work (the next node
started) and this worker reads their partition, that work starts at once, without waiting
for the events to come back through the relay and the broker; when they do, they are
recognised as handled, and their partition is committed past them once that work is saved.
Should the partition have moved to another worker meanwhile, the other worker may make the
same call again; the run records it once (its node attempt is running only once).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import Recording
from structlog.contextvars import bound_contextvars

from domain.http_tools import HttpTool
from domain.messages import RunEvent
from handlers.causes import Cause, caused
from handlers.reactions.agents import drive_agent, idempotency_key
from handlers.reactions.extraction import ExtractionOutcome, extract, record_extractions
from handlers.reactions.llm_requests import (
    LlmRequestAnswer,
    answer_llm_request,
    record_llm_answers,
)
from handlers.reactions.model_calls import (
    LlmCall,
    LlmOutcome,
    PublishToken,
    Recorder,
    call_llm,
    record_llm_outcomes,
)
from handlers.reactions.threads import record_replies
from handlers.reactions.tools import ToolNodeCall, record_tool_nodes
from handlers.reactions.worker import (
    WORKS_ON,
    WorkerBatch,
    WorkerPorts,
    find_work,
    publish_to_threads,
    work_for,
)
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork, decide_and_save

log = logging.getLogger("heddle")
T = TypeVar("T")
Key = tuple[Any, ...]
"""What a piece of work is for: (what, run id, node or request, attempt, item)."""
Apply = Callable[[UnitOfWork], None]
Saved = asyncio.Future[Any]
"""Done when every outcome of a batch is saved; failed when one of them cannot be."""

FLUSH_SECONDS = 0.0
"""How long the saver waits for more finished outcomes before a write. None: outcomes that
finish while a write is in progress go together into the next one (a group commit), so a
lone outcome is saved at once and a busy worker still writes in batches."""
SAVE_RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Pauses between tries of a write that failed: outcomes are kept. While the store is
away (an outage), the last pause repeats for as long as the outage lasts."""
HANDLED_LIMIT = 100_000
"""How many events handled eagerly are remembered until they arrive from the broker (those
of a partition that moved to another worker never do: the oldest are forgotten)."""


def call_saved(outcome: LlmOutcome) -> Apply:
    if outcome.call.kind == "reply":
        return partial(record_replies, [outcome])

    def apply(uow: UnitOfWork) -> None:
        record_llm_outcomes([outcome], uow)

    return apply


def tool_node_saved(due: ToolNodeCall, result: tuple[bool, str]) -> Apply:
    return partial(record_tool_nodes, [(due, result)])


def extraction_saved(outcome: ExtractionOutcome) -> Apply:
    return partial(record_extractions, [outcome])


def answer_saved(answer: LlmRequestAnswer) -> Apply:
    return partial(record_llm_answers, [answer])


@dataclass
class Finished:
    """An outcome waiting to be saved, and who waits for it."""

    key: Key
    run_id: UUID
    apply: Apply
    saved: asyncio.Future[None]
    cause: Cause | None = None


@dataclass
class Pipeline:
    """The work in flight in this worker process and the saver of its outcomes."""

    ports: WorkerPorts
    in_flight: set[Key] = field(default_factory=set)
    flush_seconds: float = FLUSH_SECONDS
    _finished: list[Finished] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _saver: asyncio.Task[None] | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _handled: OrderedDict[tuple[str, str], asyncio.Task[None]] = field(default_factory=OrderedDict)
    """Events handled eagerly, by (aggregate id, version), until the broker delivers them."""

    def __post_init__(self) -> None:
        plain = self.ports.unit_of_work

        def unit_of_work() -> UnitOfWork:
            uow = plain()
            uow.on_saved = self._saved
            return uow

        self.ports = dataclasses.replace(self.ports, unit_of_work=unit_of_work)

    async def take(self, records: list[Record]) -> Saved:
        """Start what `records` (read from the broker) call for; the future is done once
        all of it is saved, including the work of records already handled eagerly. (The
        relay names each event's type in a header: records of other types call for none.)"""
        self._loop = asyncio.get_running_loop()
        handled: dict[int, asyncio.Task[None]] = {}
        fresh = []
        for record in records:
            task = self._handled.pop(_event(record), None)
            if task is not None:
                handled[id(task)] = task
            elif record.headers.get("type", RunEvent.NODE_STARTED) in WORKS_ON:
                fresh.append(record)
        started = [await self._begin(partial(find_work, fresh, self.ports))] if fresh else []
        return asyncio.gather(*started, *handled.values())

    async def _begin(self, find: Callable[[], WorkerBatch]) -> Saved:
        """Find the work, send the commands and tasks it calls for, and start the rest."""
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_forever())
        batch = await self.ports.decide(find)
        for envelope, key in batch.commands:
            await self.ports.send_command(envelope, key)
        capabilities = batch.capabilities | {task["capability"] for task in batch.tasks}
        if capabilities:
            await self.ports.create_task_topics(capabilities)
        if batch.tasks:
            await self.ports.send_tasks(batch.tasks)
        return asyncio.gather(*self._start(batch))

    def _saved(self, recordings: list[Recording[UUID]]) -> None:
        """Told on the saving thread of what a save recorded: continue with the events
        that may call for work, on the loop."""
        events = [r for r in recordings if type(r.domain_event).__qualname__ in WORKS_ON]
        if events and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._continue, events)

    def _continue(self, recordings: list[Recording[UUID]]) -> None:
        """Start the work of just-saved events whose partition this worker reads."""
        records = self.ports.owned_records(recordings)
        log.debug("%d of %d saved events to continue with here", len(records), len(recordings))
        if not records:
            return
        task = asyncio.create_task(self._eagerly(records))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        keys = [_event(record) for record in records]
        for key in keys:
            self._handled[key] = task
        while len(self._handled) > HANDLED_LIMIT:
            self._handled.popitem(last=False)
        task.add_done_callback(partial(self._forget_if_failed, keys))

    async def _eagerly(self, records: list[Record]) -> None:
        await (await self._begin(partial(work_for, records, self.ports)))

    def _forget_if_failed(self, keys: list[tuple[str, str]], task: asyncio.Task[None]) -> None:
        """Work started eagerly that failed is made again when its events arrive."""
        if task.cancelled() or task.exception() is not None:
            for key in keys:
                if self._handled.get(key) is task:
                    del self._handled[key]

    async def drained(self) -> None:
        """Wait until the work in flight here is done (what it started eagerly, too)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop the work in flight (a redelivery makes it again) and the saver."""
        for task in [*self._tasks, *([self._saver] if self._saver else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._saver is not None:
            await asyncio.gather(self._saver, return_exceptions=True)

    def _start(self, batch: WorkerBatch) -> list[asyncio.Future[None]]:
        ports, declared, causes = self.ports, batch.declared, batch.causes
        publish = ports.publish_token
        if batch.threads:
            publish = partial(publish_to_threads, ports.publish_token, batch.threads)
        saved = [
            self._call(call, publish, declared, causes.get(call.run_id)) for call in batch.calls
        ]
        for due in batch.tools:
            key = idempotency_key(due.run_id, due.node_id, due.attempt, due.call.id)
            tool = partial(ports.run_tool, declared[due.run_id], due.call, key)
            work: Key = ("tool", due.run_id, due.node_id, due.attempt)
            saved.append(
                self._launch(
                    work, due.run_id, tool, partial(tool_node_saved, due), causes.get(due.run_id)
                )
            )
        for extraction in batch.extractions:
            recorder = Recorder(ports.unit_of_work(), ports.decide, saves=True)
            made = partial(extract, extraction, ports.read_document, ports.complete, recorder)
            work = ("extract", extraction.run_id, extraction.node_id, extraction.attempt)
            cause = causes.get(extraction.run_id)
            saved.append(self._launch(work, extraction.run_id, made, extraction_saved, cause))
        for request in batch.requests:
            answer = partial(answer_llm_request, request, ports.complete)
            work = ("request", request.run_id, request.request_id)
            cause = causes.get(request.run_id)
            saved.append(self._launch(work, request.run_id, answer, answer_saved, cause))
        return saved

    def _call(
        self,
        call: LlmCall,
        publish: PublishToken,
        declared: dict[UUID, dict[str, HttpTool]],
        cause: Cause | None,
    ) -> asyncio.Future[None]:
        """A model call, a thread's reply, or an agent (which saves as it goes)."""
        ports = self.ports
        key: Key = ("call", call.run_id, call.node_id, call.attempt, call.item, call.kind)
        if key not in self.in_flight:
            model = call.request.model
            log.info("calling %s for run %s node %s", model, call.run_id, call.node_id,
                     extra={"tenant": call.tenant, "run_id": str(call.run_id),
                            "node_id": call.node_id})  # fmt: skip
        if call.kind == "agent":
            agent = partial(
                drive_agent, call, ports.unit_of_work(), ports.complete,
                partial(ports.run_tool, declared[call.run_id]), ports.decide, publish,
                fresh=ports.unit_of_work,
            )  # fmt: skip
            return self._launch(key, call.run_id, agent, None, cause)
        # a thread's reply records only how it ended (answer or ReplyFailed)
        recorder = None
        if call.kind != "reply":
            recorder = Recorder(ports.unit_of_work(), ports.decide, saves=True)
        made = partial(call_llm, call, ports.complete, publish, recorder=recorder)
        return self._launch(key, call.run_id, made, call_saved, cause)

    def _launch(
        self,
        key: Key,
        run_id: UUID,
        make: Callable[[], Awaitable[T]],
        applying: Callable[[T], Apply] | None,
        cause: Cause | None = None,
    ) -> asyncio.Future[None]:
        """Start `make` unless the same work is in flight here; its outcome is saved by
        `applying(outcome)` (None: the work saves as it goes, as an agent does). What it
        records is caused by `cause`, in a span of its own."""
        saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key in self.in_flight:
            saved.set_result(None)  # the first delivery's work will save it
            return saved
        self.in_flight.add(key)

        async def work() -> None:
            step = cause
            parent = cause.traceparent if cause is not None else None
            try:
                with self.ports.traced(f"heddle.worker.{key[0]}", parent, **{
                    "heddle.run_id": str(run_id), "heddle.node_id": str(key[2]),
                }) as trace:  # fmt: skip
                    step = cause.traced(trace) if cause is not None else None
                    with caused(step):
                        outcome = await make()
            except asyncio.CancelledError:
                self.in_flight.discard(key)
                saved.cancel()
                raise
            except Exception as error:
                log.exception("work %s failed", key)
                self.in_flight.discard(key)
                saved.set_exception(error)
                return
            if applying is None:
                self.in_flight.discard(key)
                saved.set_result(None)
                return
            self._finished.append(Finished(key, run_id, applying(outcome), saved, step))
            self._wakeup.set()

        with bound_contextvars(run_id=str(run_id), node_id=str(key[2])):  # its log lines
            task = asyncio.create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return saved

    async def _save_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.flush_seconds:
                await asyncio.sleep(self.flush_seconds)
            self._wakeup.clear()
            finished, self._finished = self._finished, []
            await self._save(finished)

    async def _save(self, finished: list[Finished]) -> None:
        """Save one write of outcomes, trying again while the database is away."""
        failed: dict[Key, Exception] = {}
        tries = 0
        while True:
            try:
                failed = await self.ports.decide(partial(self._write, finished))
                break
            except Exception as error:
                outage = self.ports.is_outage(error)
                if tries >= len(SAVE_RETRY_SECONDS) and not outage:
                    # their batches are read again (and their work made again)
                    log.exception("saving %d outcomes failed for good", len(finished))
                    failed = {item.key: error for item in finished}
                    break
                if tries == 0 or not outage:
                    log.warning("saving %d outcomes failed (%r); trying again", len(finished),
                                error)  # fmt: skip
                await asyncio.sleep(SAVE_RETRY_SECONDS[min(tries, len(SAVE_RETRY_SECONDS) - 1)])
                tries += 1
        for item in finished:
            self.in_flight.discard(item.key)
            if item.key in failed:
                item.saved.set_exception(failed[item.key])
            elif not item.saved.done():
                item.saved.set_result(None)

    def _write(self, finished: list[Finished]) -> dict[Key, Exception]:
        """Apply the outcomes run by run and save them together; a run whose outcome
        raised is left out of the write (its batch is retried), the others are saved."""
        failed: dict[UUID, Exception] = {}

        def apply(uow: UnitOfWork) -> None:
            failed.clear()
            for item in finished:
                if item.run_id in failed:
                    continue
                try:
                    item.apply(uow)
                    uow.stamp(item.cause)
                except Exception as error:
                    log.exception("recording %s failed", item.key)
                    failed[item.run_id] = error
                    uow.discard(item.run_id)

        decide_and_save(apply, self.ports.unit_of_work(), self.ports.unit_of_work)
        return {item.key: failed[item.run_id] for item in finished if item.run_id in failed}


def _event(record: Record) -> tuple[str, str]:
    """Which stored event a record carries: (aggregate id, version)."""
    headers = record.headers
    return headers.get("aggregate-id", ""), headers.get("aggregate-version", "")


@dataclass(eq=False)
class Batch:
    """A batch of one partition's records and the future of its outcomes being saved."""

    records: list[Record]
    saved: Saved
    again: bool = False
    """Its work failed and it is being read again: it holds back the partition's commit
    until a batch that covers it is read."""

    @property
    def first(self) -> int:
        return self.records[0].offset

    @property
    def last(self) -> int:
        return self.records[-1].offset

    @property
    def failed(self) -> bool:
        return self.saved.done() and (self.saved.cancelled() or bool(self.saved.exception()))


@dataclass
class Progress:
    """The batches whose outcomes are still being made, per partition, in the order read;
    a partition may be committed only up to the end of its batches that are all saved."""

    _open: dict[str, list[Batch]] = field(default_factory=dict)

    def add(self, records: list[Record], saved: Saved) -> None:
        by_source: dict[str, list[Record]] = {}
        for item in records:
            by_source.setdefault(item.source, []).append(item)
        for source, own in by_source.items():
            batch = Batch(own, saved)
            batches = self._open.setdefault(source, [])
            # a batch read again is taken over once its first record comes back
            batches[:] = [
                b for b in batches if not (b.again and batch.first <= b.first <= batch.last)
            ]
            batches.append(batch)

    def settled(self) -> tuple[dict[str, int], list[Batch]]:
        """The offset each partition may now be committed up to (inclusive), and the
        batches that newly failed: they hold the partition back until they are read again
        (`add`) or given up (`drop`)."""
        committable: dict[str, int] = {}
        failed: list[Batch] = []
        for source, batches in self._open.items():
            for batch in batches:
                if batch.failed and not batch.again:
                    batch.again = True
                    failed.append(batch)
            holding = [b for b in batches if b.again or not b.saved.done()]
            below = min((b.first for b in holding), default=None)
            finished = [
                b for b in batches if b not in holding and (below is None or b.last < below)
            ]
            if finished:
                committable[source] = max(b.last for b in finished)
            self._open[source] = [b for b in batches if b not in finished]
        return committable, failed

    def drop(self, batch: Batch) -> None:
        """Give up a failed batch (its records went to the dead-letter topic)."""
        source = batch.records[0].source
        self._open[source] = [b for b in self._open.get(source, []) if b is not batch]


async def run_nodes(records: list[Record], ports: WorkerPorts) -> None:
    """Make the calls a batch of events waits for and save their outcomes (the pipeline
    for one batch: what a test drives with the in-memory store)."""
    pipeline = Pipeline(ports)
    try:
        await (await pipeline.take(records))
    finally:
        await pipeline.close()
