"""Memory of the run worker while many runs wait: the resident set (RSS) of the worker
process with 1,000 runs waiting, then 10,000.

Each run is the refund approval of `examples/approval.yaml`: a scripted `llm` node (the
worker makes the call, so it has read the run), then a `human` approval task that nobody
completes, so the run waits; with `--wait timer`, the `llm` node and then a `wait` node
of an hour. The worker runs as in production, in a process of its own
(`heddle serve --role worker --no-api`, as `throughput.py --spawn worker`); the other
roles run in this one. After a warm-up, and once each level's runs all have their task,
the worker's RSS is read (psutil) and printed with the growth per waiting run and the
ratio of the last level to the first.

Infrastructure as in `throughput.py`: `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` if set,
else an embedded PostgreSQL and Apache Kafka from Maven jars (`--broker tansu`).

    .venv/bin/python bench/memory.py [--levels 1000 10000] [--wait human|timer]
        [--broker kafka|tansu]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
import psycopg
import yaml

from bench.machine import machine
from bench.throughput import infrastructure, spawn_role, start_runs, stop_child
from infra.runtime import ALL_ROLES, Heddle

APPROVAL = Path(__file__).resolve().parents[1] / "examples" / "approval.yaml"
WARM_UP = 20
QUIET_S = 3.0
WAITS = {"human": "tasks", "timer": "timers"}
"""What a run waits on, and the read model that has a row for it once it waits."""


def waiting_on(wait: str) -> dict[str, Any]:
    """The refund approval, or (`timer`) its draft followed by an hour's wait."""
    definition: dict[str, Any] = yaml.safe_load(APPROVAL.read_text())
    if wait == "timer":
        definition["name"] = "refund-later"
        definition["nodes"] = {
            "draft": {**definition["nodes"]["draft"], "next": "later"},
            "later": {"kind": "wait", "for": "1h", "next": "send"},
            "send": definition["nodes"]["send"],
        }
    return definition


async def wait_until_waiting(
    database_url: str, table: str, run_ids: list[str], limit_s: float
) -> None:
    """Poll a read model (tasks, timers) until every run has its row there."""
    deadline = time.monotonic() + limit_s
    shown = time.monotonic()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cursor = await conn.execute(
                f"SELECT count(DISTINCT run_id) FROM {table} WHERE run_id = ANY(%s::uuid[])",
                [run_ids],
            )
            row = await cursor.fetchone()
            waiting = row[0] if row else 0
            if waiting == len(run_ids):
                return
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                print(f"  ... {waiting} of {len(run_ids)} runs waiting", file=sys.stderr)
            await asyncio.sleep(0.1)
    raise SystemExit(f"runs were not all waiting within {limit_s} s")


def mib(process: psutil.Process) -> float:
    return process.memory_info().rss / 1024 / 1024


async def main(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        database_url, bootstrap, settings = infrastructure(stack, args.broker)
        worker = spawn_role("worker", settings, database_url, bootstrap)
        stack.callback(stop_child, worker)
        heddle = Heddle(settings, database_url, bootstrap)
        await heddle.start([role for role in ALL_ROLES if role != "worker"])
        try:
            definition = waiting_on(args.wait)
            result = await heddle.publish_workflow(definition, "default", "bench")
            assert result["status"] == "accepted", result
            print(f"machine: {machine()}")
            broker = bootstrap if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else args.broker
            print(f"broker: {broker}")
            then = "a human task" if args.wait == "human" else "a wait of 1h"
            print(f"workflow: {definition['name']} (llm on scripted:echo, then {then})")
            print(f"worker: its own process; HEDDLE_AGGREGATE_CACHE_SIZE "
                  f"{settings.aggregate_cache_size}")  # fmt: skip
            process = psutil.Process(worker.pid)
            waiting: list[str] = []

            async def wait_for(total: int) -> float:
                more = await start_runs(
                    bootstrap, heddle.topics.commands, total - len(waiting),
                    definition["name"], {"customer": "Ada", "amount": 120},
                )  # fmt: skip
                waiting.extend(more)
                await wait_until_waiting(database_url, WAITS[args.wait], waiting, 900)
                await asyncio.sleep(QUIET_S)  # let the worker finish its commits
                return mib(process)

            base = await wait_for(WARM_UP)
            print(f"\n{'waiting runs':>14} {'worker RSS':>12} {'per run since warm-up':>22}")
            print(f"{WARM_UP:>14,} {base:>9.1f} MiB {'':>22}")
            figures = []
            for level in args.levels:
                rss = await wait_for(level)
                per_run = (rss - base) * 1024 / (level - WARM_UP)
                figures.append(rss)
                print(f"{level:>14,} {rss:>9.1f} MiB {per_run:>18.1f} KiB")
            if len(figures) > 1:
                first, last = args.levels[0], args.levels[-1]
                print(
                    f"\nRSS at {last:,} / at {first:,}: {figures[-1] / figures[0]:.2f}x"
                    f" for {last / first:g}x the runs"
                )
        finally:
            await heddle.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--levels", type=int, nargs="+", default=[1000, 10_000], help="waiting runs, rising"
    )
    parser.add_argument("--wait", choices=sorted(WAITS), default="human", help="what runs wait on")
    parser.add_argument("--broker", choices=["kafka", "tansu"], default="kafka")
    args = parser.parse_args()
    if sorted(args.levels) != args.levels or args.levels[0] <= WARM_UP:
        parser.error(f"--levels must rise, each above the {WARM_UP} warm-up runs")
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
