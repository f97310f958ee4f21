"""The worker role: consumes `heddle.events` and runs the run worker's loop
(handlers/reactions/worker.py) with this process's ports: the store, the one retry
layer, the tools, the token publisher, and the broker for commands and remote tasks."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Recording

from domain.errors import NodeNotRunning
from domain.runs import WorkflowRun
from handlers.reactions.pipeline import Pipeline, Saved
from handlers.reactions.worker import WORKS_ON, SendCommand, WorkerPorts
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork
from infra import tracing
from infra.bootstrap import Ports
from infra.claims import CLAIMS_MARK
from infra.faults import is_outage
from infra.kafka import Reading, create_topics, subscribe_pipelined
from infra.relay import event_messages
from infra.store import Positions, dumps

log = logging.getLogger("heddle")


class Worker:
    """Runs the nodes that need I/O; sends commands through `send_command`."""

    def __init__(self, ports: Ports, epoch: str, send_command: SendCommand) -> None:
        self.ports = ports
        self.positions = Positions(ports.store, f"worker@{epoch}")
        self._task_topics: set[str] = set()
        self._new_capabilities: set[str] = set()
        self.reading = Reading(ports.topics.events)
        self.worker_ports = WorkerPorts(
            unit_of_work=partial(UnitOfWork, ports.store),
            positions=self.positions,
            decide=ports.writer.run,
            complete=ports.complete_llm,
            run_tool=ports.run_tool,
            read_document=ports.documents.text,
            publish_token=ports.tokens.publish,
            send_command=send_command,
            send_tasks=self.send_tasks,
            create_task_topics=self.create_task_topics,
            owned_records=self.owned_records,
            is_outage=is_outage,
            traced=tracing.span,
        )
        self.pipeline = Pipeline(self.worker_ports)
        self.max_in_flight = ports.settings.worker_max_in_flight

    async def subscribe(self) -> None:
        """Start the token publisher and subscribe to the events."""
        await self.ports.tokens.start()
        subscribe_pipelined(
            self.ports.broker, self.ports.settings, self.ports.topics.events, "worker", self,
            dlq_topic=self.ports.topics.dlq, reading=self.reading,
        )  # fmt: skip

    def owned_records(self, recordings: list[Recording[UUID]]) -> list[Record]:
        """Just-saved events of the partitions this worker reads, as the relay publishes
        them (their offsets are not known yet: -1). One holding claims (large values) is
        left to its delivery, which reads them off the event loop."""
        owned = []
        for recording in recordings:
            notification = recording.notification
            partition = self.reading.partition(str(notification.originator_id).encode())
            if partition is not None:
                owned.append((notification, partition))
        records = []
        messages = event_messages(self.ports.store, [notification for notification, _ in owned])
        for (key, value, headers), (_, partition) in zip(messages, owned, strict=True):
            if CLAIMS_MARK in value:
                continue
            named = {name: raw.decode() for name, raw in headers}
            records.append(Record(self.reading.topic, partition, -1, key, value, named))
        return records

    async def take(self, records: list[Record]) -> Saved:
        """Start the work a batch of events calls for; done once its outcomes are saved.
        (Large values arrive as claims: the handlers see them resolved.)"""
        if any(CLAIMS_MARK in r.value and r.headers.get("type") in WORKS_ON for r in records):
            records = await asyncio.to_thread(self.ports.store.resolved, records)
        return await self.pipeline.take(records)

    def busy(self) -> bool:
        """As much work is in flight as this worker takes on: stop reading for now."""
        return len(self.pipeline.in_flight) >= self.max_in_flight

    async def settle(self, committable: dict[str, int]) -> None:
        """Record how far each partition's work is saved, before Kafka is told."""

        def save() -> None:
            further = self.positions.further(committable)
            if further:
                try:
                    self.ports.store.recorder.insert_positions(further)  # type: ignore[attr-defined]
                except Exception:
                    self.positions.forget()
                    raise
                self.positions.advance(further)

        await self.ports.writer.run(save)

    async def close(self) -> None:
        await self.pipeline.close()

    async def create_task_topics(self, capabilities: set[str]) -> None:
        """Make the task topics of these capabilities, once per process (the ones a
        failed try did not make are made with the next batch's)."""
        self._new_capabilities |= capabilities
        topics = {self.ports.topics.tasks_for(c) for c in self._new_capabilities}
        topics -= self._task_topics
        if topics:
            settings = self.ports.settings
            await create_topics(settings, sorted(topics), settings.partitions)
            self._task_topics |= topics
        self._new_capabilities.clear()

    async def send_tasks(self, tasks: list[dict[str, Any]]) -> None:
        """Publish tasks of `remote` nodes to their capability's topic."""
        topics = self.ports.topics
        for task in tasks:
            message = dumps({**task, "reply_to": topics.task_results})
            if len(message) > self.ports.settings.max_message_bytes:
                await self.ports.writer.run(self.fail_oversized_task, task, len(message))
                continue
            log.info("sending task %s to %s", task["task_id"], task["capability"],
                     extra={k: task[k] for k in ("tenant", "run_id", "node_id")})  # fmt: skip
            await self.ports.broker.publish(
                message, topics.tasks_for(task["capability"]),
                key=task["run_id"].encode(), headers={"task_id": task["task_id"]},
            )  # fmt: skip

    def fail_oversized_task(self, task: dict[str, Any], size: int) -> None:
        """A task over the broker's limit is never sent: its node fails (class
        `definition`: the workflow hands the worker too much), once."""
        uow = UnitOfWork(self.ports.store)
        run = uow.get(UUID(task["run_id"]), WorkflowRun)
        limit = self.ports.settings.max_message_bytes
        error = {
            "class": "definition",
            "message": f"the task is {size} bytes as JSON; at most {limit} fit on its topic"
            " (pass a document id rather than the content)",
        }
        if run is not None:
            with suppress(NodeNotRunning):
                run.fail_node(task["node_id"], task["attempt"], error, now=datetime.now(UTC))
        uow.save()
