"""The runtime: one process of Heddle, which builds its ports (infra/bootstrap.py) and
starts the roles it runs (infra/roles/). `heddle up` runs every role in one process;
production runs them as separate processes with `heddle serve --role`. The API and the
CLI use this object: its store, read pool, writer, broker and the commands it sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any

from domain.messages import CommandEnvelope
from handlers.commands.context import Context
from handlers.commands.intake import execute
from handlers.unit_of_work import UnitOfWork
from infra import metrics, tracing
from infra.bootstrap import build
from infra.faults import Outage, backoff, is_outage
from infra.kafka import consumer_lag, ensure_topics
from infra.roles.intake import Intake
from infra.roles.projector import ProjectorRole
from infra.roles.relay import relay_loop
from infra.roles.timers import timers_loop
from infra.roles.worker import Worker
from infra.settings import Settings

log = logging.getLogger("heddle")
ALL_ROLES = ("intake", "relay", "worker", "projector", "timers")


class Heddle:
    """One process of Heddle: the ports it built, the roles it runs.

    `environ`, when given, replaces the process environment for the providers' keys and
    base URLs and the credentials key (settings read it otherwise, once); `overrides`
    replace ports (`bootstrap.build`), e.g. a test's model provider.
    """

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        bootstrap_servers: str,
        epoch: str = "kafka",
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> None:
        settings = settings.model_copy(
            update={"database_url": database_url, "kafka_bootstrap_servers": bootstrap_servers}
        )
        if environ is not None:
            settings = settings.with_environment(environ)
        self.settings, self.database_url, self.bootstrap_servers = (
            settings, database_url, bootstrap_servers,
        )  # fmt: skip
        self.epoch = epoch
        self.ports = ports = build(settings, **overrides)
        self.topics, self.store, self.writer, self.broker = (
            ports.topics, ports.store, ports.writer, ports.broker,
        )  # fmt: skip
        self.reads, self.credentials, self.llm, self.documents, self.tokens = (
            ports.reads, ports.credentials, ports.llm, ports.documents, ports.tokens,
        )  # fmt: skip
        self.projector: ProjectorRole | None = None
        self.worker: Worker | None = None
        self.roles: tuple[str, ...] = ()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, roles: Iterable[str] = ALL_ROLES) -> None:
        """Connect and start the given roles; returns when they are consuming."""
        self.roles = tuple(roles)
        unknown = set(self.roles) - set(ALL_ROLES) - {"api"}
        if unknown:
            known = ", ".join(ALL_ROLES)
            raise ValueError(f"unknown roles {sorted(unknown)} (known: {known}, api)")
        tracing.configure_from(self.settings.tracing)
        await ensure_topics(self.settings, self.topics)
        await self.reads.open()
        metrics.watch_read_models(self.database_url, self.store.events_table)
        metrics.watch_consumer_lag(partial(consumer_lag, self.settings, self.topics))
        if "intake" in self.roles:
            Intake(self.ports, self.epoch).subscribe()
        if "worker" in self.roles:
            self.worker = Worker(self.ports, self.epoch, self.send_command)
            await self.worker.subscribe()
        if "projector" in self.roles:
            self.projector = ProjectorRole(self.ports, self.epoch)
            self.projector.subscribe()
        await self.broker.start()
        if "relay" in self.roles:
            self._run_in_background(relay_loop(self.ports, self.epoch))
        if "timers" in self.roles:
            self._run_in_background(timers_loop(self.ports, self.send_command))

    async def stop(self) -> None:
        """Stop the roles and close every connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.broker.stop()
        if self.worker:
            await self.worker.close()
        await self.tokens.stop()
        await self.reads.close()
        await self.llm.aclose()
        await self.ports.http_tools.aclose()
        if self.projector:
            await self.projector.close()
        self.writer.close()
        self.store.close()

    async def send_command(self, envelope: CommandEnvelope, key: str) -> None:
        """Publish a command to `heddle.commands`, keyed by `key` (a run id keeps its order);
        `MessageTooLarge` when it would not fit the broker's limit."""
        value = envelope.model_dump_json().encode()
        limit = self.settings.max_message_bytes
        if len(value) > limit:
            raise MessageTooLarge(
                f"the {envelope.type} command is {len(value)} bytes as JSON; at most {limit}"
                " fit on the commands topic (send large content as a document)"
            )
        trace = tracing.current()
        headers = {"traceparent": trace} if trace else None
        await self.broker.publish(value, self.topics.commands, key=key.encode(), headers=headers)

    async def publish_workflow(self, document: Any, tenant: str, actor: str) -> dict[str, Any]:
        """Publish a definition synchronously: the receipt says accepted or why not."""
        return await self.decide("PublishWorkflow", {"definition": document}, tenant, actor)

    async def decide(
        self, type_: str, payload: dict[str, Any], tenant: str, actor: str
    ) -> dict[str, Any]:
        """Decide a command here and now (a publication, whose problems the caller must
        get back at once): its receipt's result, accepted or why not."""
        envelope = CommandEnvelope(
            command_id=str(uuid.uuid4()), type=type_, tenant=tenant, actor=actor, payload=payload
        )

        def publish() -> dict[str, Any]:
            uow = UnitOfWork(self.store)
            receipt = execute(envelope, uow, Context(allowed_hosts=self.settings.allowed_hosts))
            uow.save()
            assert receipt is not None
            return receipt.as_result()

        return await self.writer.run(publish)

    def _run_in_background(self, loop: Callable[[], Awaitable[None]]) -> None:
        self._tasks.append(asyncio.create_task(keep_running(loop)))


class MessageTooLarge(ValueError):
    """A message Heddle was asked to publish is over the broker's size limit."""


async def keep_running(loop: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop, restarting it after a failure, with a pause (through an
    outage: a growing one, and one line when it starts rather than a traceback a try)."""
    outage = Outage("restarting a background loop")
    while True:
        began = time.monotonic()
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not is_outage(error):
                outage.over()
                log.exception("background loop failed; restarting in 1 s")
                await asyncio.sleep(1.0)
                continue
            if time.monotonic() - began > backoff(outage.tries):
                outage.over()  # it ran longer than its last pause: a new outage
            await outage.wait(error)
