"""The intake role: decides each batch of commands (and of remote workers' results) in
one transaction with its positions, and reports each command's receipt (and logs it: one
line per command, with its id, type, tenant, outcome and reason)."""

from __future__ import annotations

import logging

from domain.commands import CommandReceipt
from handlers.causes import Cause
from handlers.commands.context import Context
from handlers.commands.intake import handle_command, task_result_as_command
from handlers.records import Record, trackings_for
from handlers.unit_of_work import UnitOfWork
from infra import metrics, tracing
from infra.bootstrap import Ports
from infra.kafka import publish_all, subscribe_batches
from infra.store import Positions, dumps

log = logging.getLogger("heddle.intake")


class Intake:
    """Consumes `heddle.commands`, every tenant's own command topic (each command bound
    to the topic's tenant: docs/security.md) and `heddle.task-results`."""

    def __init__(self, ports: Ports, epoch: str) -> None:
        self.ports = ports
        self.positions = Positions(ports.store, f"intake@{epoch}")

    def subscribe(self) -> None:
        ports, topics = self.ports, self.ports.topics
        subscribe_batches(
            ports.broker, ports.settings, topics.commands, "intake", self.take_commands,
            dlq_topic=topics.dlq,
        )  # fmt: skip
        subscribe_batches(
            ports.broker, ports.settings, topics.tenant_commands_pattern, "intake-tenants",
            self.take_commands, dlq_topic=topics.dlq, pattern=True,
        )  # fmt: skip
        subscribe_batches(
            ports.broker, ports.settings, topics.task_results, "intake-results",
            self.take_task_results, dlq_topic=topics.dlq,
        )  # fmt: skip

    async def take_commands(self, records: list[Record]) -> None:
        """Decide a batch of commands, save in one transaction, report results."""

        def decide() -> list[CommandReceipt]:
            fresh = self.positions.fresh(records)
            uow = UnitOfWork(self.ports.store)
            ctx = Context(allowed_hosts=self.ports.settings.allowed_hosts)
            tenant_of = self.ports.topics.tenant_of
            receipts = []
            for record in fresh:
                parent = record.headers.get("traceparent")
                with tracing.span("heddle.intake.command", parent, topic=record.topic) as trace:
                    receipt = handle_command(record, uow, ctx, tenant_of(record.topic))
                if receipt is not None:
                    cause = Cause.of_command(receipt.command_id, receipt.correlation_id, trace)
                    uow.stamp(cause)  # its events: caused by it, in the caller's trace
                    receipts.append(receipt)
            trackings = trackings_for(self.positions.consumer, fresh)
            try:
                uow.save(trackings)
            except Exception:
                self.positions.forget()
                raise
            self.positions.advance(trackings)
            return receipts

        with metrics.timed(metrics.COMMAND_BATCH):
            receipts = await self.ports.writer.run(decide)
        metrics.count_commands(receipts)
        for receipt in receipts:
            log.info("%s %s %s%s", receipt.type, receipt.command_id, receipt.outcome,
                     f": {receipt.reason}" if receipt.reason else "", extra={
                         "command_id": receipt.command_id, "command_type": receipt.type,
                         "tenant": receipt.tenant, "outcome": receipt.outcome,
                         "correlation_id": receipt.correlation_id,
                     })  # fmt: skip
        await publish_all(
            self.ports.broker,
            self.ports.topics.command_results,
            [(r.command_id.encode(), dumps(r.as_result()), {}) for r in receipts],
        )

    async def take_task_results(self, records: list[Record]) -> None:
        """Answers of remote workers, decided as `CompleteRemoteTask` commands."""
        await self.take_commands([task_result_as_command(record) for record in records])
