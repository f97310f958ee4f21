"""The timer role: fires the timers runs have set, when they are due, and evaluates the
playbooks again for each customer once a day.

Timers are events in their runs (`TimerSet`); the `timers` read model lists the pending
ones. This role asks it for those that are due and sends a `FireTimer` command for each,
with the command id `timer:<run>:<timer>`: the intake decides each command id once, so a
timer fires once even when this role sends it again (after a restart, or while the read
model has not caught up), and any number of timer roles may run. The daily evaluation
works the same way: a customer not evaluated yet today (`queues.EVALUATION_DUE`) gets
`EvaluateCustomer` with the command id `evaluate:<customer>:<day>`; and so do schedules:
each due tick of an active schedule (`projections.schedules.DUE`) gets `FireSchedule`
with the command id `schedule:<schedule>:<tick>`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from domain.messages import CommandEnvelope
from domain.schedules import ScheduleSpec, fire_command_id
from projections.queues import EVALUATION_DUE
from projections.schedules import DUE as SCHEDULES_DUE

log = logging.getLogger("heddle.timers")

Send = Callable[[CommandEnvelope, str], Awaitable[None]]
RESEND_AFTER = 5.0
"""Seconds before a due timer that is still pending is sent again."""
EVALUATE_EVERY = 10.0
"""Seconds between two looks for customers due their daily evaluation (a scan of the
customers, not worth doing at every timer poll)."""
DUE = """
SELECT run_id, timer_id, tenant FROM timers
WHERE status = 'pending' AND fire_at <= now() ORDER BY fire_at LIMIT 500
"""


class Timers:
    def __init__(self, reads: AsyncConnectionPool[Any], send: Send, poll_seconds: float) -> None:
        self.reads, self.send, self.poll_seconds = reads, send, poll_seconds
        self._sent: dict[tuple[str, str], float] = {}
        self._evaluated = -EVALUATE_EVERY

    async def run(self) -> None:
        while True:
            await self.fire_due()
            await self.fire_schedules()
            if time.monotonic() - self._evaluated >= EVALUATE_EVERY:
                self._evaluated = time.monotonic()
                await self.evaluate_due()
            await asyncio.sleep(self.poll_seconds)

    async def fire_due(self) -> int:
        """Send `FireTimer` for every due timer not sent in the last few seconds."""
        async with self.reads.connection() as conn, conn.cursor() as cur:
            await cur.execute(DUE)
            due = await cur.fetchall()
        now = time.monotonic()
        self._sent = {k: at for k, at in self._sent.items() if now - at < RESEND_AFTER}
        fresh = [
            (str(run_id), timer, tenant)
            for run_id, timer, tenant in due
            if (str(run_id), timer) not in self._sent
        ]
        for run_id, timer, tenant in fresh:
            envelope = CommandEnvelope(
                command_id=f"timer:{run_id}:{timer}",
                type="FireTimer",
                tenant=tenant,
                actor="heddle",
                payload={"run_id": run_id, "timer": timer},
            )
            await self.send(envelope, run_id)
            self._sent[(run_id, timer)] = now
        if fresh:
            log.info("fired %d timers", len(fresh))
        return len(fresh)

    async def fire_schedules(self) -> int:
        """Send `FireSchedule` for each due tick of each active schedule (those missed
        within its `catch_up` window too, oldest first), not sent in the last few seconds."""
        async with self.reads.connection() as conn, conn.cursor() as cur:
            await cur.execute(SCHEDULES_DUE)
            due = await cur.fetchall()
        now = time.monotonic()
        self._sent = {k: at for k, at in self._sent.items() if now - at < RESEND_AFTER}
        sent = 0
        for schedule_id, tenant, name, spec, after in due:
            for tick in ScheduleSpec.model_validate(spec).ticks(after, datetime.now(UTC)):
                command_id = fire_command_id(schedule_id, tick)
                if ("schedule", command_id) in self._sent:
                    continue
                envelope = CommandEnvelope(
                    command_id=command_id, type="FireSchedule", tenant=tenant, actor="heddle",
                    payload={"name": name, "tick": tick.isoformat()},
                )  # fmt: skip
                await self.send(envelope, str(schedule_id))
                self._sent[("schedule", command_id)] = now
                sent += 1
        if sent:
            log.info("fired %d schedule ticks", sent)
        return sent

    async def evaluate_due(self) -> int:
        """Send `EvaluateCustomer` for every customer not evaluated yet today (and not sent
        in the last few seconds)."""
        async with self.reads.connection() as conn, conn.cursor() as cur:
            await cur.execute(EVALUATION_DUE)
            due = await cur.fetchall()
        now = time.monotonic()
        day = datetime.now(UTC).date().isoformat()
        fresh = [row for row in due if ("customer", str(row[2])) not in self._sent]
        for tenant, external, aggregate_id in fresh:
            envelope = CommandEnvelope(
                command_id=f"evaluate:{external}:{day}",
                type="EvaluateCustomer",
                tenant=tenant,
                actor="heddle",
                payload={"customer_id": external},
            )
            await self.send(envelope, str(aggregate_id))
            self._sent[("customer", str(aggregate_id))] = now
        if fresh:
            log.info("evaluated %d customers for the day", len(fresh))
        return len(fresh)
