"""A CSM's queue with 10,000 customers and 50 CSMs: how long `GET /v1/queues/{assignee}`
takes (p50, p95, max), and how fast customers are written and evaluated.

The example pack's three renewal workflows and its playbook are published, then
`--customers` customers (owners spread over `--csms` CSMs; renewal dates, risk, ARR and
health trend drawn from a seeded random generator) are sent as `UpsertCustomer` commands
with a plain Kafka client, as a CRM sync would. Once every customer's recommendations
are in the read model, `--bound` runs are started from the queues (so that the queues
have open tasks and the runs table customers' runs), then each CSM's queue is read
`--reads` times in turn through the API (in process, over httpx's ASGI transport: the
route, its queries and the JSON, without a socket).

Infrastructure as in `throughput.py`: `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` if set,
else an embedded PostgreSQL and Apache Kafka from Maven jars.

    .venv/bin/python bench/queues.py [--customers 10000] [--csms 50] [--reads 1000]
        [--bound 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psycopg
import yaml
from aiokafka import AIOKafkaProducer

from api.http.app import create_app
from bench.machine import machine
from bench.throughput import infrastructure
from domain.customers import customer_id
from infra.keys import ApiKeys
from infra.runtime import ALL_ROLES, Heddle

PACK = Path(__file__).resolve().parents[1] / "examples" / "customer-success"


def customers(count: int, csms: int, seed: int = 17) -> list[dict[str, Any]]:
    """`count` customers spread evenly over `csms` owners, with seeded random figures."""
    draw = random.Random(seed)
    today = datetime.now(UTC).date()
    return [
        {
            "customer_id": f"c{number:05d}",
            "profile": {
                "name": f"Customer {number:05d}",
                "owner": f"csm-{number % csms:02d}",
                "arr": draw.randrange(5_000, 800_000, 1_000),
                "renewal_date": (today + timedelta(days=draw.randrange(0, 365))).isoformat(),
                "risk": draw.randrange(0, 101),
                "health": draw.randrange(0, 101),
                "health_trend": draw.choice(["up", "flat", "down"]),
            },
        }
        for number in range(count)
    ]


async def send_customers(bootstrap: str, topic: str, batch: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for payload in batch:
            key = str(customer_id("default", payload["customer_id"]))
            command = {"command_id": f"bench-{payload['customer_id']}", "type": "UpsertCustomer",
                       "actor": "bench", "payload": payload}  # fmt: skip
            futures.append(
                await producer.send(topic, json.dumps(command).encode(), key=key.encode())
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count(database_url: str, query: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (await conn.execute(query)).fetchone()
        return int(row[0]) if row else 0


async def until_count(database_url: str, query: str, target: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while (found := await count(database_url, query)) < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"{found} of {target} after {limit_s} s: {query}")
        await asyncio.sleep(0.2)


async def main(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        database_url, bootstrap, settings = infrastructure(stack, "kafka")
        heddle = Heddle(settings, database_url, bootstrap)
        await heddle.start(list(ALL_ROLES))
        try:
            for kind in ("prepare", "critical", "emergency"):
                document = yaml.safe_load((PACK / f"renewal-{kind}.yaml").read_text())
                assert (await heddle.publish_workflow(document, "default", "bench"))[
                    "status"
                ] == "accepted"
            playbook = yaml.safe_load((PACK / "playbook.yaml").read_text())
            published = await heddle.decide(
                "PublishPlaybook", {"playbook": playbook}, "default", "bench"
            )
            assert published["status"] == "accepted", published
            print(f"machine: {machine()}")
            print(f"customers: {args.customers}, CSMs: {args.csms}, playbook: renewals (3 rules)")
            began = time.monotonic()
            await send_customers(
                bootstrap, heddle.topics.commands, customers(args.customers, args.csms)
            )
            await until_count(
                database_url, "SELECT count(*) FROM queue_customers", args.customers, 900
            )
            seconds = time.monotonic() - began
            items = await count(database_url, "SELECT count(*) FROM queue_items")
            print(f"written and evaluated: {args.customers} customers in {seconds:.1f} s "
                  f"({args.customers / seconds:.0f}/s); {items} recommendations")  # fmt: skip
            _, key = await ApiKeys(heddle.reads).create("default", ["read", "write"], "bench")
            transport = httpx.ASGITransport(app=create_app(heddle))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", timeout=60,
                headers={"Authorization": f"Bearer {key}"},
            ) as client:  # fmt: skip
                csms = [f"csm-{n:02d}" for n in range(args.csms)]
                for number in range(args.bound):
                    csm = csms[number % len(csms)]
                    queue = (await client.get(f"/v1/queues/{csm}")).json()
                    if queue["items"]:
                        top = queue["items"][0]["item_id"]
                        started = await client.post(f"/v1/queues/{csm}/items/{top}/start")
                        assert started.status_code == 202, started.text
                await until_count(
                    database_url, "SELECT count(*) FROM tasks WHERE status = 'open'",
                    args.bound, 300,
                )  # fmt: skip
                for csm in csms:  # warm up
                    await client.get(f"/v1/queues/{csm}")
                timings, shown = [], []
                for number in range(args.reads):
                    csm = csms[number % len(csms)]
                    start = time.perf_counter()
                    answer = await client.get(f"/v1/queues/{csm}")
                    timings.append((time.perf_counter() - start) * 1000)
                    assert answer.status_code == 200, answer.text
                    shown.append(answer.json()["stats"]["total"])
            timings.sort()
            p95 = timings[int(len(timings) * 0.95) - 1]
            print(f"queue items per CSM: {statistics.mean(shown):.0f} on average "
                  f"(recommendations and open tasks)")  # fmt: skip
            print(
                f"GET /v1/queues/{{assignee}}: {args.reads} reads, p50 "
                f"{statistics.median(timings):.1f} ms, p95 {p95:.1f} ms, max {timings[-1]:.1f} ms"
            )
        finally:
            await heddle.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--csms", type=int, default=50)
    parser.add_argument("--reads", type=int, default=1_000)
    parser.add_argument("--bound", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
