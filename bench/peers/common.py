"""What the peers' benchmarks share: arguments, timing, and output in the format of
Heddle's `bench/throughput.py`, so `compare.py` reads every engine's figures the same way.

Standard library only: it runs in the peers' venv, without Heddle on the path.

The workload is `throughput.py`'s: a chain of `--nodes` steps, each a "model call" that
answers after `--latency-ms` with its prompt (Heddle's `scripted:echo`), each prompt
carrying the previous reply. A step ends when its output is durable and the engine has
moved on to the next step; the last step ends when the run's end is durable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Timeline:
    """One run: when it started and when each step ended (time.monotonic seconds)."""

    started: float
    ends: list[float] = field(default_factory=list)
    finished: float = 0.0


# The engine's run function: (run id, its timeline to fill) -> the last reply.
RunOne = Callable[[str, Timeline], Awaitable[str]]


def prompt(index: int, previous: str) -> str:
    """The prompt of step `index`, as Heddle's chain renders it ("step 0: x", ...)."""
    return f"step {index}: {previous}"[:200]


async def model(text: str, latency_s: float) -> str:
    """The scripted model: answers with the prompt after `latency_s` (none when 0)."""
    if latency_s:
        await asyncio.sleep(latency_s)
    return text


def percentile(values: list[float], fraction: float) -> float:
    """The same nearest-rank percentile as throughput.py."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def parser(description: str) -> argparse.ArgumentParser:
    """throughput.py's workload arguments, with its defaults."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs (0 to skip)")
    parser.add_argument("--sequential", type=int, default=20, help="runs one at a time (0 to skip)")
    parser.add_argument("--rounds", type=int, default=3, help="batches of concurrent runs")
    parser.add_argument("--nodes", type=int, default=10, help="steps per chain")
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="the model's answer time (default: instant)"
    )
    parser.add_argument(
        "--pool", type=int, default=20, help="PostgreSQL connections (DBOS's default: 20)"
    )
    return parser


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "DATABASE_URL is required (a database of its own); bench/peers/compare.py sets it"
        )
    return url


async def timed_run(run_one: RunOne) -> Timeline:
    """One run with a fresh id, timed from the call to the durable end."""
    timeline = Timeline(started=time.monotonic())
    await run_one(str(uuid.uuid4()), timeline)
    timeline.finished = time.monotonic()
    return timeline


def report(title: str, timelines: list[Timeline], nodes: int, cpu_s: float) -> dict[str, float]:
    """Prints throughput.py's block for these runs; returns steps and span."""
    step_ms: list[float] = []
    run_ms: list[float] = []
    for timeline in timelines:
        # The last step ends when the run's end is saved, as Heddle's last NodeCompleted
        # is saved with the run's completion.
        ends = [*timeline.ends[: nodes - 1], timeline.finished]
        if len(timeline.ends) < nodes - 1:
            raise SystemExit(f"a run recorded {len(timeline.ends)} steps of {nodes}")
        previous = timeline.started
        for at in ends:
            step_ms.append((at - previous) * 1000)
            previous = at
        run_ms.append((timeline.finished - timeline.started) * 1000)
    steps = len(step_ms)
    span = max(t.finished for t in timelines) - min(t.started for t in timelines)
    print(f"\n{title}")
    print(f"  node-steps        {steps} in {span:.2f} s = {steps / span:,.0f} steps/s")
    print(f"  engine CPU        {cpu_s * 1000 / steps:.2f} ms per step")
    print(
        f"  per step          p50 {percentile(step_ms, 0.5):.1f} ms"
        f"   p99 {percentile(step_ms, 0.99):.1f} ms"
    )
    print(
        f"  per run           p50 {percentile(run_ms, 0.5):.1f} ms"
        f"   p99 {percentile(run_ms, 0.99):.1f} ms"
    )
    return {"steps": steps, "span_s": span, "cpu_ms": cpu_s * 1000 / steps}


async def benchmark(args: argparse.Namespace, run_one: RunOne) -> None:
    """throughput.py's scenarios: a warm-up, `--sequential` runs one at a time, then
    `--rounds` batches of `--runs` concurrent runs."""
    await asyncio.gather(*(timed_run(run_one) for _ in range(5)))  # warm-up
    if args.sequential:
        cpu = time.process_time()
        timelines = [await timed_run(run_one) for _ in range(args.sequential)]
        cpu = time.process_time() - cpu
        report(f"one run at a time ({args.sequential} runs)", timelines, args.nodes, cpu)
    rates, cpus = [], []
    for round_ in range(1, args.rounds + 1 if args.runs else 1):
        cpu = time.process_time()
        timelines = list(await asyncio.gather(*(timed_run(run_one) for _ in range(args.runs))))
        cpu = time.process_time() - cpu
        title = f"{args.runs} concurrent runs (round {round_} of {args.rounds})"
        result = report(title, timelines, args.nodes, cpu)
        if args.latency_ms:
            ideal = args.nodes * args.latency_ms / 1000
            print(f"  vs ideal          {result['span_s'] / ideal:.2f}x ({ideal:g} s)")
        rates.append(result["steps"] / result["span_s"])
        cpus.append(result["cpu_ms"])
    if len(rates) > 1:
        print(
            f"\nmedian of {len(rates)} rounds: {percentile(rates, 0.5):,.0f} steps/s,"
            f" engine CPU {percentile(cpus, 0.5):.2f} ms per step"
        )
