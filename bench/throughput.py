"""Throughput and latency of the real pipeline: command → store → Kafka → worker → store.

Runs a 10-node chain of `llm` nodes on the scripted provider (no model latency), so what
is measured is Heddle itself: intake, event store appends, the relay, Kafka hops, the
worker and its saves. Two scenarios:

- `--runs 100` concurrent runs: node-steps per second over the whole batch;
- one run at a time (`--sequential 20`): per-step and per-run latency.

Each scenario also prints the CPU time Heddle's processes (this one and any spawned
role) used per step: on a machine shared with other work it varies far less than
steps/s, so compare changes by it too.

A step is one `llm` node: from the previous node's completion to this node's completion
(the hop through the relay and Kafka to the worker, the call, the save). Timestamps are
the events' own, read back from the store after the runs end.

Infrastructure: `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` if set, else an embedded
PostgreSQL and Apache Kafka from Maven jars (`--broker tansu` for the light broker).

    .venv/bin/python bench/throughput.py [--runs 100] [--sequential 20] [--nodes 10]
        [--latency-ms 0] [--spawn worker]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from aiokafka import AIOKafkaProducer

from bench.machine import machine
from infra.bootstrap import create_schema
from infra.devstack import ApacheKafka, EmbeddedPostgres, Tansu, create_database, free_port
from infra.runtime import ALL_ROLES, Heddle
from infra.settings import Settings


def chain(nodes: int, latency_ms: float = 0) -> dict[str, Any]:
    """A chain of `nodes` llm nodes; each prompt carries the previous reply, and the model
    answers after `latency_ms` (a real model is never instant)."""
    graph: dict[str, Any] = {}
    for index in range(nodes):
        previous = f"{{{{ vars.s{index - 1} }}}}" if index else "{{ input.topic }}"
        graph[f"s{index}"] = {
            "kind": "llm",
            "model": "scripted:echo",
            "prompt": f"step {index}: {previous}"[:200],
            "output": f"s{index}",
            **({"options": {"latency_ms": latency_ms}} if latency_ms else {}),
            **({"next": f"s{index + 1}"} if index < nodes - 1 else {}),
        }
    return {
        "name": "bench-chain",
        "inputs": {"type": "object", "properties": {"topic": {"type": "string"}}},
        "start": "s0",
        "nodes": graph,
    }


def spawn_role(
    role: str, settings: Settings, database_url: str, bootstrap: str
) -> subprocess.Popen[bytes]:
    """One role in its own process, as production runs it (`heddle serve --role`)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HEDDLE_TOPIC_PREFIX": settings.topic_prefix,
        "HEDDLE_GROUP_PREFIX": settings.group_prefix,
        "HEDDLE_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "HEDDLE_METRICS_PORT": str(free_port()),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--role", role, "--no-api"],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("HEDDLE_BENCH_CHILD_LOG", os.devnull), "ab"),
    )


def stop_child(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        child.kill()


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time used so far by these processes (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def start_runs(
    bootstrap: str,
    topic: str,
    count: int,
    workflow: str = "bench-chain",
    input: dict[str, Any] | None = None,
) -> list[str]:
    """Publish `count` StartRun commands with a plain Kafka client; returns the run ids."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    run_ids = [str(uuid.uuid4()) for _ in range(count)]
    try:
        futures = []
        for run_id in run_ids:
            command = {
                "command_id": f"bench-{run_id}",
                "type": "StartRun",
                "actor": "bench",
                "payload": {
                    "workflow": workflow,
                    "run_id": run_id,
                    "input": {"topic": "x"} if input is None else input,
                },
            }
            futures.append(
                await producer.send(topic, json.dumps(command).encode(), key=run_id.encode())
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return run_ids


def run_events(database_url: str, run_ids: list[str]) -> dict[str, list[tuple[str, str, datetime]]]:
    """(type, node id, timestamp) of each run's events, in order, read from the store."""
    from infra.store import EventStore, store_environment

    store = EventStore(env=store_environment(database_url, 0, create_tables=False))
    try:
        found: dict[str, list[tuple[str, str, datetime]]] = {}
        for run_id in run_ids:
            events = store.aggregate_events(uuid.UUID(run_id))
            found[run_id] = [
                (e["type"], e["data"].get("node_id", ""), datetime.fromisoformat(e["timestamp"]))
                for e in events
            ]
        return found
    finally:
        store.close()


async def wait_until_finished(database_url: str, run_ids: list[str], limit_s: float) -> float:
    """Poll the run read model until every run has finished; returns when that was seen."""
    deadline = time.monotonic() + limit_s
    shown = time.monotonic()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cursor = await conn.execute(
                "SELECT status, count(*) FROM runs WHERE run_id = ANY(%s::uuid[]) GROUP BY 1",
                [run_ids],
            )
            counts = dict(await cursor.fetchall())
            if counts.get("failed"):
                raise SystemExit(f"{counts['failed']} runs failed: {counts}")
            if counts.get("completed", 0) == len(run_ids):
                return time.monotonic()
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                print(f"  ... {dict(counts)} of {len(run_ids)}", file=sys.stderr)
            await asyncio.sleep(0.02)
    raise SystemExit(f"runs did not finish within {limit_s} s: {counts}")


def measure(events: dict[str, list[tuple[str, str, datetime]]]) -> dict[str, Any]:
    """Steps, their latencies, run latencies, and the span from first start to last end."""
    step_ms: list[float] = []
    run_ms: list[float] = []
    first, last = None, None
    steps = 0
    for timeline in events.values():
        started = timeline[0][2]
        finished = timeline[-1][2]
        run_ms.append((finished - started).total_seconds() * 1000)
        previous = started
        completions = [at for kind, _, at in timeline if kind == "WorkflowRun.NodeCompleted"]
        for at in completions:
            step_ms.append((at - previous).total_seconds() * 1000)
            previous = at
        steps += len(completions)
        first = started if first is None or started < first else first
        last = finished if last is None or finished > last else last
    assert first is not None
    assert last is not None
    span = (last - first).total_seconds()
    return {"steps": steps, "span_s": span, "step_ms": step_ms, "run_ms": run_ms}


def report(title: str, result: dict[str, Any], cpu_s: float) -> None:
    steps, span = result["steps"], result["span_s"]
    print(f"\n{title}")
    print(f"  node-steps        {steps} in {span:.2f} s = {steps / span:,.0f} steps/s")
    print(f"  Heddle CPU        {cpu_s * 1000 / steps:.2f} ms per step")
    print(
        f"  per step          p50 {percentile(result['step_ms'], 0.5):.1f} ms"
        f"   p99 {percentile(result['step_ms'], 0.99):.1f} ms"
    )
    print(
        f"  per run           p50 {percentile(result['run_ms'], 0.5):.1f} ms"
        f"   p99 {percentile(result['run_ms'], 0.99):.1f} ms"
    )


def infrastructure(stack: ExitStack, broker: str) -> tuple[str, str, Settings]:
    """A new database (with Heddle's schema), a Kafka bootstrap address and settings with
    topics and groups of their own: `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` if set,
    else embedded servers (`broker`: kafka or tansu) that `stack` stops."""
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="heddle-bench-")))
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        server_url = stack.enter_context(EmbeddedPostgres(work / "postgres")).url
    database_url = create_database(server_url, f"bench_{uuid.uuid4().hex[:12]}")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    overrides: dict[str, Any] = {}
    if not bootstrap:
        if broker == "tansu":
            bootstrap = stack.enter_context(Tansu(log_dir=work)).bootstrap_servers
            overrides["session_timeout_ms"] = 2000
        else:
            bootstrap = stack.enter_context(ApacheKafka(work / "kafka")).bootstrap_servers
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = Settings(  # type: ignore[call-arg]
        topic_prefix=prefix, group_prefix=prefix[:-1], _env_file=None, **overrides
    )
    create_schema(settings, database_url)
    return database_url, bootstrap, settings


async def main(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        database_url, bootstrap, settings = infrastructure(stack, args.broker)
        in_process = [role for role in ALL_ROLES if role not in args.spawn]
        children = [spawn_role(role, settings, database_url, bootstrap) for role in args.spawn]
        for child in children:
            stack.callback(stop_child, child)
        heddle = Heddle(settings, database_url, bootstrap)
        await heddle.start(in_process)
        pids = [os.getpid(), *(child.pid for child in children)]
        try:
            workflow = chain(args.nodes, args.latency_ms)
            result = await heddle.publish_workflow(workflow, "default", "bench")
            assert result["status"] == "accepted", result
            print(f"machine: {machine()}")
            broker = bootstrap if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else args.broker
            print(f"broker: {broker}")
            answers = f", answering in {args.latency_ms:g} ms" if args.latency_ms else ""
            print(f"workflow: a chain of {args.nodes} llm nodes on scripted:echo{answers}")
            spawned = ", ".join(args.spawn) or "none"
            print(f"roles in this process: {', '.join(in_process)}; in their own: {spawned}")

            # Warm up: consumer groups joined, caches and code paths hot.
            warm = await start_runs(bootstrap, heddle.topics.commands, 5)
            await wait_until_finished(database_url, warm, 120)

            if args.sequential:
                ids: list[str] = []
                cpu = cpu_seconds(pids)
                for _ in range(args.sequential):
                    one = await start_runs(bootstrap, heddle.topics.commands, 1)
                    await wait_until_finished(database_url, one, 60)
                    ids += one
                cpu = cpu_seconds(pids) - cpu
                report(
                    f"one run at a time ({args.sequential} runs)",
                    measure(await asyncio.to_thread(run_events, database_url, ids)),
                    cpu,
                )

            rates, cpus = [], []
            for round_ in range(1, args.rounds + 1 if args.runs else 1):
                cpu = cpu_seconds(pids)
                ids = await start_runs(bootstrap, heddle.topics.commands, args.runs)
                await wait_until_finished(database_url, ids, 600)
                cpu = cpu_seconds(pids) - cpu
                result = measure(await asyncio.to_thread(run_events, database_url, ids))
                report(
                    f"{args.runs} concurrent runs (round {round_} of {args.rounds})", result, cpu
                )
                if args.latency_ms:
                    ideal = args.nodes * args.latency_ms / 1000
                    print(f"  vs ideal          {result['span_s'] / ideal:.2f}x ({ideal:g} s)")
                rates.append(result["steps"] / result["span_s"])
                cpus.append(cpu * 1000 / result["steps"])
            if len(rates) > 1:
                print(
                    f"\nmedian of {len(rates)} rounds: {percentile(rates, 0.5):,.0f} steps/s,"
                    f" Heddle CPU {percentile(cpus, 0.5):.2f} ms per step"
                )
        finally:
            await heddle.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs (0 to skip)")
    parser.add_argument("--sequential", type=int, default=20, help="runs one at a time (0 to skip)")
    parser.add_argument("--rounds", type=int, default=3, help="batches of concurrent runs")
    parser.add_argument("--nodes", type=int, default=10, help="llm nodes per chain")
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="the model's answer time (default: instant)"
    )
    parser.add_argument("--broker", choices=["kafka", "tansu"], default="kafka")
    parser.add_argument(
        "--spawn",
        action="append",
        default=[],
        choices=list(ALL_ROLES),
        help="run this role in its own process (repeatable); default: all roles in one",
    )
    args = parser.parse_args()
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
