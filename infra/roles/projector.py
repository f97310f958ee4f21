"""The projector role: applies each batch of `heddle.events` to the read models."""

from __future__ import annotations

import asyncio

from handlers.records import Record
from infra.bootstrap import Ports
from infra.kafka import subscribe_batches
from infra.projector import Projector


class ProjectorRole:
    """Consumes `heddle.events` in fuller batches (`projector_gather_ms`)."""

    def __init__(self, ports: Ports, epoch: str) -> None:
        self.ports = ports
        assert ports.settings.database_url is not None  # build() checked it
        self.projector = Projector(
            ports.settings.database_url, consumer=f"projector@{epoch}", store=ports.store
        )

    def subscribe(self) -> None:
        ports = self.ports
        subscribe_batches(
            ports.broker, ports.settings, ports.topics.events, "projector", self.project,
            dlq_topic=ports.topics.dlq, gather_ms=ports.settings.projector_gather_ms,
        )  # fmt: skip

    async def project(self, records: list[Record]) -> None:
        """Apply a batch (its claims resolved: read models hold the values)."""
        await asyncio.to_thread(lambda: self.projector.apply(self.ports.store.resolved(records)))

    async def close(self) -> None:
        await asyncio.to_thread(self.projector.close)
