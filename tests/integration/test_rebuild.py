"""Issue 5's acceptance: rebuilding every projection after 1,000 runs gives identical rows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import psycopg

from infra.projector import PROJECTIONS, rebuild
from tests.integration.helpers import example, publish
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)
from tests.integration.test_projections import table_digest
from tests.integration.test_reads import AGENT, FLAKY

RUNS = 1000


def digests(database_url: str) -> dict[str, tuple[int, str]]:
    """Row count and a hash of the rows, of every projection's tables."""
    return {t: table_digest(database_url, t) for p in PROJECTIONS.values() for t in p.TABLES}


async def until_finished(database_url: str, count: int, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    finished = 0
    while time.monotonic() < deadline:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM runs WHERE status IN ('completed', 'failed', 'cancelled')"
            )
            [finished] = await cursor.fetchone() or [0]
        if finished >= count:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{finished} of {count} runs finished in {seconds} s")


QUIET = {"tasks", "timers", "threads", "thread_messages", "queue_snoozes", "schedules",
         "schedule_fires"}  # fmt: skip
"""Tables these runs leave empty (tests/integration/test_projections.py fills them)."""


async def test_rebuilding_every_projection_after_1000_runs_gives_identical_rows(
    heddle: Any, client: httpx.AsyncClient
) -> None:
    for definition in (example("hello"), example("map"), example("actions"), AGENT, FLAKY):
        await publish(client, definition)
    playbook = {"name": "care", "rules": [{"id": "all", "workflow": "hello", "stage": "now"}]}
    assert (await client.put("/v1/playbooks/care", json=playbook)).status_code == 200
    for number in range(20):
        body = {"name": f"Customer {number}", "owner": f"csm-{number % 3}"}
        assert (await client.put(f"/v1/customers/c{number}", json=body)).status_code == 202
    starts = [("hello", {"name": f"Ada {n}" if n % 2 else f"Alan {n}"}) for n in range(RUNS)]
    starts += [("titles", {"chapters": ["a", "b"]}), ("agent-calc", {}), ("flaky", {})]
    starts += [("renewal-brief", {"customer": "Acme", "arr": 10, "days_to_renewal": 5})]
    for chunk in range(0, len(starts), 100):
        answers = await asyncio.gather(
            *(
                client.post("/v1/runs", json={"workflow": workflow, "input": input})
                for workflow, input in starts[chunk : chunk + 100]
            )
        )
        assert all(a.status_code == 202 for a in answers)
    await until_finished(heddle.database_url, len(starts))
    before = digests(heddle.database_url)
    assert before["runs"][0] == len(starts)
    assert all(count > 0 for table, (count, _) in before.items() if table not in QUIET), before
    count = await asyncio.to_thread(rebuild, heddle.database_url, heddle.store)
    assert count > 10 * RUNS
    assert digests(heddle.database_url) == before
    for name in PROJECTIONS:
        await asyncio.to_thread(rebuild, heddle.database_url, heddle.store, name)
        assert digests(heddle.database_url) == before, f"{name} differs after its rebuild"
