"""The composition root: builds Heddle's object graph and runs its roles.

Roles: `intake` (commands → events), `relay` (store → `heddle.events`), `worker`
(node execution), `projector` (read models). `heddle up` runs all of them in one
process; production runs them as separate processes with `heddle serve --role`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from domain.commands import CommandEnvelope, CommandReceipt
from domain.http_tools import HttpTool
from domain.llm import LlmRequest, LlmResult, RetryPolicy, ToolCall
from handlers.extraction import extract, extractions_due, record_extractions
from handlers.intake import execute, handle_command, task_result_as_command
from handlers.llm_requests import answer_llm_request, llm_requests_due, record_llm_answers
from handlers.records import Record, trackings_for
from handlers.run_worker import (
    OnDelta,
    OnTryFailed,
    Recorder,
    TokenDelta,
    call_llm,
    capabilities_published,
    decode_events,
    drive_agent,
    llm_calls_due,
    record_llm_outcomes,
    record_tool_nodes,
    remote_tasks_due,
    tool_nodes_due,
)
from handlers.subworkflows import agents_to_resume, subworkflow_commands
from handlers.threads import (
    close_chat_threads,
    open_chat_threads,
    post_run_answers,
    record_replies,
    replies_due,
    threads_answered,
)
from handlers.tools import builtin_tools
from handlers.unit_of_work import UnitOfWork
from infra.credentials import CredentialStore, create_credentials_table
from infra.documents import Documents, create_documents_table
from infra.http_tools import HttpTools, parse_headers, register_http_tools
from infra.kafka import (
    TokenPublisher,
    create_broker,
    create_topics,
    ensure_topics,
    publish_all,
    subscribe_batches,
)
from infra.keys import create_keys_table
from infra.llm.retrying import complete_with_retries, stream_with_retries
from infra.llm.router import ProviderRouter, ProviderSettings
from infra.projector import Projector, create_read_models
from infra.relay import Relay
from infra.settings import Settings, Topics
from infra.store import EventStore, Positions, Writer, dumps, store_environment
from infra.timers import Timers

log = logging.getLogger("heddle")
ALL_ROLES = ("intake", "relay", "worker", "projector", "timers")
SCHEMA_LOCK = 0x68656465  # serialises schema creation between processes


def create_schema(settings: Settings, database_url: str) -> None:
    """Create the event store's and the read models' tables once, under a lock."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [SCHEMA_LOCK])
        try:
            store = EventStore(env=store_environment(database_url, 0, create_tables=True))
            store.close()
            create_read_models(conn)
            create_credentials_table(conn)
            create_keys_table(conn)
            create_documents_table(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [SCHEMA_LOCK])


@dataclass
class WorkerBatch:
    """What one batch of events gives the run worker to do, found in one store session."""

    uow: UnitOfWork
    fresh: list[Record]
    commands: list[tuple[CommandEnvelope, str]]
    extractions: list[Any]
    requests: list[Any]
    calls: list[Any] = field(default_factory=list)
    tools: list[Any] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    threads: dict[Any, Any] = field(default_factory=dict)
    declared: dict[uuid.UUID, dict[str, HttpTool]] = field(default_factory=dict)
    """The HTTP tools each run's definition declares, for its tool and agent calls."""


@dataclass
class Heddle:
    """One process of Heddle: the store, the broker, the roles it runs."""

    settings: Settings
    database_url: str
    bootstrap_servers: str
    epoch: str = "kafka"
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def __post_init__(self) -> None:
        self.topics = Topics(self.settings.topic_prefix)
        self.store = EventStore(
            env=store_environment(
                self.database_url, self.settings.aggregate_cache_size, create_tables=False
            )
        )
        self.writer = Writer()
        self.broker = create_broker(self.settings, self.bootstrap_servers)
        self.reads = AsyncConnectionPool(self.database_url, min_size=1, max_size=8, open=False)
        self.credentials = CredentialStore(self.reads, self.environ)
        self.llm = ProviderRouter(
            ProviderSettings.from_env(self.environ), credentials=self.credentials
        )
        self.retry_policy = RetryPolicy()
        self.tools = builtin_tools()
        self.documents = Documents(self.reads)
        self.http_tools = HttpTools(
            self.settings.allowed_hosts,
            parse_headers(self.settings.http_tool_headers.get_secret_value()),
            self.settings.http_tool_max_response_bytes,
        )
        register_http_tools(
            self.tools, self.settings.http_tools.get_secret_value(), self.http_tools
        )
        self.relay: Relay | None = None
        self.projector: Projector | None = None
        self.tokens = TokenPublisher(self.bootstrap_servers, self.topics.tokens)
        self._intake_positions = Positions(self.store, f"intake@{self.epoch}")
        self._worker_positions = Positions(self.store, f"worker@{self.epoch}")
        self._tasks: list[asyncio.Task[None]] = []
        self._task_topics: set[str] = set()
        self._new_capabilities: set[str] = set()
        self.roles: tuple[str, ...] = ()

    async def start(self, roles: Iterable[str] = ALL_ROLES) -> None:
        """Connect and start the given roles; returns when they are consuming."""
        self.roles = tuple(roles)
        unknown = set(self.roles) - set(ALL_ROLES) - {"api"}
        if unknown:
            known = ", ".join(ALL_ROLES)
            raise ValueError(f"unknown roles {sorted(unknown)} (known: {known}, api)")
        await ensure_topics(self.bootstrap_servers, self.topics, self.settings.partitions)
        await self.reads.open()
        dlq = self.topics.dlq
        if "intake" in self.roles:
            subscribe_batches(
                self.broker, self.settings, self.topics.commands, "intake", self.take_commands,
                dlq_topic=dlq,
            )
            subscribe_batches(
                self.broker, self.settings, self.topics.task_results, "intake-results",
                self.take_task_results, dlq_topic=dlq,
            )
        if "worker" in self.roles:
            await self.tokens.start()
            subscribe_batches(
                self.broker, self.settings, self.topics.events, "worker", self.run_nodes,
                dlq_topic=dlq,
            )
        if "projector" in self.roles:
            self.projector = Projector(self.database_url, consumer=f"projector@{self.epoch}")
            subscribe_batches(
                self.broker, self.settings, self.topics.events, "projector", self.project,
                dlq_topic=dlq, gather_ms=self.settings.projector_gather_ms,
            )
        await self.broker.start()
        if "relay" in self.roles:
            self.relay = Relay(
                self.store, self.database_url, self.topics.events, self.bootstrap_servers,
                position_name=f"relay@{self.epoch}",
            )
            self._tasks.append(asyncio.create_task(self._keep_running(self.relay.run)))
        if "timers" in self.roles:
            timers = Timers(self.reads, self.send_command, self.settings.timer_poll_ms / 1000)
            self._tasks.append(asyncio.create_task(self._keep_running(timers.run)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.broker.stop()
        await self.tokens.stop()
        await self.reads.close()
        await self.llm.aclose()
        await self.http_tools.aclose()
        if self.projector:
            await asyncio.to_thread(self.projector.close)
        self.writer.close()
        self.store.close()

    async def send_command(self, envelope: CommandEnvelope, key: str) -> None:
        """Publish a command to `heddle.commands`, keyed by `key` (a run id keeps its order)."""
        await self.broker.publish(
            envelope.model_dump_json().encode(), self.topics.commands, key=key.encode()
        )

    async def publish_workflow(self, document: Any, tenant: str, actor: str) -> dict[str, Any]:
        """Publish a definition synchronously: the receipt says accepted or why not."""
        envelope = CommandEnvelope(
            command_id=str(uuid.uuid4()),
            type="PublishWorkflow",
            tenant=tenant,
            actor=actor,
            payload={"definition": document},
        )

        def publish() -> dict[str, Any]:
            uow = UnitOfWork(self.store)
            receipt = execute(envelope, uow, self.settings.allowed_hosts)
            uow.save()
            assert receipt is not None
            return receipt.as_result()

        return await self.writer.run(publish)

    # Roles

    async def take_commands(self, records: list[Record]) -> None:
        """Intake: decide a batch of commands, save in one transaction, report results."""

        def decide() -> list[CommandReceipt]:
            fresh = self._intake_positions.fresh(records)
            uow = UnitOfWork(self.store)
            hosts = self.settings.allowed_hosts
            receipts = [r for r in (handle_command(record, uow, hosts) for record in fresh) if r]
            trackings = trackings_for(self._intake_positions.consumer, fresh)
            uow.save(trackings)
            self._intake_positions.advance(trackings)
            return receipts

        receipts = await self.writer.run(decide)
        await publish_all(
            self.broker,
            self.topics.command_results,
            [(r.command_id.encode(), dumps(r.as_result()), {}) for r in receipts],
        )

    async def run_nodes(self, records: list[Record]) -> None:
        """Worker: make the model calls started nodes wait for, record the outcomes."""

        def find_work() -> WorkerBatch:
            uow = UnitOfWork(self.store)
            fresh = self._worker_positions.fresh(records)
            events = decode_events(fresh)
            self._new_capabilities |= capabilities_published(events)
            batch = WorkerBatch(
                uow, fresh, subworkflow_commands(fresh, uow), extractions_due(events, uow),
                llm_requests_due(events, uow),
            )
            # Idempotent by themselves (a thread opens once, an answer is posted once):
            # saved now, so that a batch with no call still records them.
            open_chat_threads(events, uow)
            post_run_answers(events, uow)
            close_chat_threads(events, uow)
            uow.save()
            batch.calls = llm_calls_due(events, uow) + agents_to_resume(fresh, uow)
            batch.calls += replies_due(events, uow)
            batch.tools = tool_nodes_due(events, uow)
            agents = {c.run_id for c in batch.calls if c.kind == "agent"}
            for run_id in agents | {t.run_id for t in batch.tools}:
                batch.declared[run_id] = uow.get(run_id).spec.tools
            batch.tasks = remote_tasks_due(events, uow)
            batch.threads = threads_answered(batch.calls, uow)
            return batch

        batch = await self.writer.run(find_work)
        uow, calls, tools, declared = batch.uow, batch.calls, batch.tools, batch.declared
        for envelope, key in batch.commands:
            await self.send_command(envelope, key)
        publish = (
            partial(self._publish_to, batch.threads) if batch.threads else self.tokens.publish
        )
        capabilities = self._new_capabilities | {task["capability"] for task in batch.tasks}
        if capabilities:
            await self.create_task_topics(capabilities)
        if batch.tasks:
            await self.send_tasks(batch.tasks)
        if not calls and not tools and not batch.extractions and not batch.requests:
            return
        for call in calls:
            log.info("calling %s for run %s node %s", call.request.model, call.run_id, call.node_id)
        agents = [c for c in calls if c.kind == "agent"]
        recorder = Recorder(uow, self.writer.run)
        outcomes, tool_results, extracted, answers, *_ = await asyncio.gather(
            asyncio.gather(*(
                call_llm(
                    call, self.complete_llm, publish,
                    # a thread's reply records only how it ended (answer or ReplyFailed)
                    recorder=recorder if call.kind != "reply" else None,
                )
                for call in calls if call.kind != "agent"
            )),
            asyncio.gather(*(self.run_tool(declared[due.run_id], due.call) for due in tools)),
            asyncio.gather(*(
                extract(due, self.documents.text, self.complete_llm, recorder)
                for due in batch.extractions
            )),
            asyncio.gather(*(
                answer_llm_request(due, self.complete_llm) for due in batch.requests
            )),
            *(
                drive_agent(
                    call, uow, self.complete_llm, partial(self.run_tool, declared[call.run_id]),
                    self.writer.run, publish,
                )
                for call in agents
            ),
        )

        def record() -> None:
            record_llm_outcomes([o for o in outcomes if o.call.kind != "reply"], uow)
            record_replies([o for o in outcomes if o.call.kind == "reply"], uow)
            record_tool_nodes(list(zip(tools, tool_results, strict=True)), uow)
            record_extractions(list(extracted), uow)
            record_llm_answers(list(answers), uow)
            trackings = trackings_for(self._worker_positions.consumer, batch.fresh)
            uow.save(trackings)
            self._worker_positions.advance(trackings)

        await self.writer.run(record)

    async def run_tool(self, declared: dict[str, HttpTool], call: ToolCall) -> tuple[bool, str]:
        """Run a tool call: an HTTP tool the run's definition declares, or a registered one."""
        tool = declared.get(call.name)
        if tool is not None:
            return await self.http_tools.call(call.name, tool, call.arguments)
        return await self.tools.run(call)

    def _publish_to(self, threads: dict[Any, Any], delta: TokenDelta) -> None:
        """Publish a delta; one of a run that answers a thread goes to the thread too."""
        self.tokens.publish(delta)
        thread_id = threads.get(delta.run_id)
        if thread_id is not None:
            self.tokens.publish(dataclasses.replace(delta, run_id=thread_id, thread=True))

    async def create_task_topics(self, capabilities: set[str]) -> None:
        """Make the task topics of these capabilities, once per process."""
        topics = {self.topics.tasks_for(c) for c in capabilities} - self._task_topics
        if topics:
            await create_topics(self.bootstrap_servers, sorted(topics), self.settings.partitions)
            self._task_topics |= topics
        self._new_capabilities.clear()

    async def send_tasks(self, tasks: list[dict[str, Any]]) -> None:
        """Publish tasks of `remote` nodes to their capability's topic."""
        for task in tasks:
            log.info("sending task %s to %s", task["task_id"], task["capability"])
            message = {**task, "reply_to": self.topics.task_results}
            await self.broker.publish(
                dumps(message), self.topics.tasks_for(task["capability"]),
                key=task["run_id"].encode(), headers={"task_id": task["task_id"]},
            )

    async def take_task_results(self, records: list[Record]) -> None:
        """Intake: answers of remote workers, decided as `CompleteRemoteTask` commands."""
        await self.take_commands([task_result_as_command(record) for record in records])

    async def project(self, records: list[Record]) -> None:
        assert self.projector is not None
        await asyncio.to_thread(self.projector.apply, records)

    async def complete_llm(
        self, request: LlmRequest, tenant: str, on_try_failed: OnTryFailed,
        on_delta: OnDelta | None = None,
    ) -> LlmResult:
        """The one retry layer around the providers; streamed when `on_delta` is given."""
        providers = self.llm.for_tenant(tenant)
        if on_delta is not None:
            return await stream_with_retries(
                providers, request, self.retry_policy, on_delta, on_try_failed, rand=random.random
            )
        return await complete_with_retries(
            providers, request, self.retry_policy, on_try_failed, rand=random.random
        )

    async def _keep_running(self, loop: Any) -> None:
        """Restart a background loop after a failure, with a pause."""
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background loop failed; restarting in 1 s")
                await asyncio.sleep(1.0)
