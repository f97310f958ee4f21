"""How fast the read models rebuild: every projection, from a store of `--events` events.

The store is filled straight through the event store (no Kafka, no workers): runs of
`examples/hello.yaml` (an `llm` node, a `switch`, a `set`) and, one in ten, of
`examples/map.yaml` over three items, decided by the `WorkflowRun` aggregate with
scripted answers and saved in batches, with the definitions' own events. Then every
projection is rebuilt from the store in one pass (`infra.projector.rebuild`), `--rounds`
times; the figure is events per second, the median of the rounds.

Infrastructure: `DATABASE_URL` if set (a fresh database is made on that server), else an
embedded PostgreSQL.

    .venv/bin/python bench/rebuild.py [--events 100000] [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from bench.machine import machine
from domain.definitions import parse_definition
from domain.llm import LlmResult, Usage
from domain.runs import WorkflowRun
from infra.bootstrap import create_schema
from infra.devstack import EmbeddedPostgres, create_database
from infra.projector import PROJECTIONS, rebuild
from infra.settings import Settings
from infra.store import EventStore, store_environment

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ["Ada", "Grace", "Alan", "Barbara", "Edsger"]


def answer(text: str, index: int) -> LlmResult:
    return LlmResult(
        text=text,
        finish_reason="stop",
        model="echo",
        provider="scripted",
        usage=Usage(input_tokens=5 + index % 7, output_tokens=3 + index % 5),
        latency_ms=1.5,
        cost_usd=0.0001 * (1 + index % 3),
    )


def decided_run(specs: dict[str, Any], index: int) -> WorkflowRun:
    """A finished run: hello, or one in ten a map over three chapters."""
    spec = specs["titles"] if index % 10 == 9 else specs["hello"]
    if spec.name == "titles":
        input: dict[str, Any] = {"chapters": [f"chapter {n} of {index}" for n in range(3)]}
    else:
        input = {"name": f"{NAMES[index % len(NAMES)]} {index}"}
    run = WorkflowRun(
        run_id=uuid.uuid4(),
        tenant=f"tenant-{index % 3}",
        actor="bench",
        workflow=spec.name,
        version=1,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input=input,
        command_id=f"c-{index}",
    )
    run.advance(now=datetime.now(UTC))
    if spec.name == "titles":
        for item in range(3):
            run.complete_llm_call(
                "each", 1, answer(f"Title {item}", index), item=item, now=datetime.now(UTC)
            )
    else:
        run.complete_llm_call(
            "greet", 1, answer(f"Hello {input['name']}", index), now=datetime.now(UTC)
        )
    return run


def fill(store: EventStore, events: int, batch: int = 200) -> int:
    """Store finished runs until there are at least `events` events; returns the count."""
    specs = {}
    for name in ("hello", "map"):
        spec = parse_definition(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()))
        specs[spec.name] = spec
    stored, index = 0, 0
    while stored < events:
        runs = [decided_run(specs, index + n) for n in range(batch)]
        index += batch
        stored += sum(len(run.pending_events) for run in runs)
        store.save(*runs)
    return stored


def rebuild_all(database_url: str, store: EventStore, profile: bool) -> tuple[int, float]:
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    count = rebuild(database_url, store, *PROJECTIONS)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return count, seconds


def main(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        server_url = os.environ.get("DATABASE_URL")
        if not server_url:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="heddle-bench-")))
            server_url = stack.enter_context(EmbeddedPostgres(work / "postgres")).url
        database_url = create_database(server_url, f"bench_{uuid.uuid4().hex[:12]}")
        create_schema(Settings(_env_file=None), database_url)
        store = EventStore(env=store_environment(database_url, 0, create_tables=False))
        stack.callback(store.close)
        started = time.perf_counter()
        stored = fill(store, args.events)
        print(f"stored {stored:,} events in {time.perf_counter() - started:.1f} s")
        print(f"machine: {machine()}")
        rates = []
        for round_ in range(1, args.rounds + 1):
            count, seconds = rebuild_all(database_url, store, args.profile)
            rates.append(count / seconds)
            print(
                f"round {round_}: rebuilt {len(PROJECTIONS)} projections from {count:,} events"
                f" in {seconds:.2f} s = {count / seconds:,.0f} events/s"
            )
        print(f"median of {len(rates)} rounds: {statistics.median(rates):,.0f} events/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each round")
    main(parser.parse_args())
