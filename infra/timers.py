"""The timer role: fires the timers runs have set, when they are due.

Timers are events in their runs (`TimerSet`); the `timers` read model lists the pending
ones. This role asks it for those that are due and sends a `FireTimer` command for each,
with the command id `timer:<run>:<timer>`: the intake decides each command id once, so a
timer fires once even when this role sends it again (after a restart, or while the read
model has not caught up), and any number of timer roles may run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from domain.messages import CommandEnvelope

log = logging.getLogger("heddle.timers")

Send = Callable[[CommandEnvelope, str], Awaitable[None]]
RESEND_AFTER = 5.0
"""Seconds before a due timer that is still pending is sent again."""
DUE = """
SELECT run_id, timer_id, tenant FROM timers
WHERE status = 'pending' AND fire_at <= now() ORDER BY fire_at LIMIT 500
"""


class Timers:
    def __init__(self, reads: AsyncConnectionPool[Any], send: Send, poll_seconds: float) -> None:
        self.reads, self.send, self.poll_seconds = reads, send, poll_seconds
        self._sent: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        while True:
            await self.fire_due()
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
