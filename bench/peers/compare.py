"""Heddle, LangGraph and DBOS on the same workload, back to back, in one table.

Starts one embedded PostgreSQL (or uses the server `DATABASE_URL` points at), then runs,
one after the other with the same arguments:

- Heddle: `bench/throughput.py --spawn worker` (the production layout: the worker in its
  own `heddle serve` process, the other roles in the benchmark's; Apache Kafka from the
  jars unless `KAFKA_BOOTSTRAP_SERVERS` is set), in this interpreter (Heddle's venv);
- LangGraph: `bench/peers/langgraph_chain.py` (AsyncPostgresSaver), in the peers' venv;
- DBOS: `bench/peers/dbos_chain.py` (its PostgreSQL system database), in the peers' venv.

Each gets a database of its own on the same server. Their outputs are shown as they run;
then one table gives each figure per engine and its ratio to the best engine's (1.00x is
the best; 2.00x is twice the time, or half the steps/s). Concurrent-run figures are the
median of the `--rounds` rounds.

    make -C bench/peers compare ARGS="--runs 1000 --nodes 5 --latency-ms 1000"
    .venv/bin/python bench/peers/compare.py [--runs 100] [--sequential 20] [--nodes 10]
        [--latency-ms 0] [--rounds 3] [--engines heddle,langgraph,dbos]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.machine import machine
from infra.devstack import EmbeddedPostgres, create_database

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "bench" / "peers"
# engine: (script, its own arguments); `langgraph-async` is LangGraph's default durability.
ENGINES = {
    "heddle": (ROOT / "bench" / "throughput.py", []),
    "langgraph": (PEERS / "langgraph_chain.py", ["--durability", "sync"]),
    "dbos": (PEERS / "dbos_chain.py", []),
    "langgraph-async": (PEERS / "langgraph_chain.py", ["--durability", "async"]),
}
NAMES = {
    "heddle": "Heddle",
    "langgraph": "LangGraph",
    "dbos": "DBOS",
    "langgraph-async": "LangGraph (async)",
}
DEFAULT_ENGINES = "heddle,langgraph,dbos"

# (key, label, higher is better) in the table's order; the keys are parse()'s.
FIGURES = [
    ("span_s", "total span (s)", False),
    ("vs_ideal", "vs ideal (nodes x latency)", False),
    ("steps_per_s", "node-steps/s", True),
    ("step_p50", "per step p50 (ms)", False),
    ("step_p99", "per step p99 (ms)", False),
    ("run_p50", "per run p50 (ms)", False),
    ("run_p99", "per run p99 (ms)", False),
    ("cpu_ms", "engine CPU per step (ms)", False),
]

NUMBER = r"([\d,]+(?:\.\d+)?)"
LINES = {
    "node_steps": re.compile(rf"^\s+node-steps\s+(\d+) in {NUMBER} s"),
    "cpu": re.compile(rf"^\s+\w+ CPU\s+{NUMBER} ms per step"),
    "step": re.compile(rf"^\s+per step\s+p50 {NUMBER} ms\s+p99 {NUMBER} ms"),
    "run": re.compile(rf"^\s+per run\s+p50 {NUMBER} ms\s+p99 {NUMBER} ms"),
    "ideal": re.compile(rf"^\s+vs ideal\s+{NUMBER}x"),
}


def number(text: str) -> float:
    return float(text.replace(",", ""))


def parse(output: str) -> dict[str, Any]:
    """throughput.py's blocks (the peers print the same): {"sequential": figures,
    "concurrent": [figures of each round]}, figures keyed as in FIGURES."""
    found: dict[str, Any] = {"sequential": None, "concurrent": []}
    block: dict[str, float] | None = None
    for line in output.splitlines():
        if line.startswith("one run at a time"):
            block = found["sequential"] = {}
        elif re.match(r"^\d+ concurrent runs", line):
            block = {}
            found["concurrent"].append(block)
        elif not line.startswith(" "):
            block = None
        elif block is not None:
            if match := LINES["node_steps"].match(line):
                steps, span = number(match[1]), number(match[2])
                block.update(span_s=span, steps_per_s=steps / span)
            elif match := LINES["cpu"].match(line):
                block["cpu_ms"] = number(match[1])
            elif match := LINES["step"].match(line):
                block.update(step_p50=number(match[1]), step_p99=number(match[2]))
            elif match := LINES["run"].match(line):
                block.update(run_p50=number(match[1]), run_p99=number(match[2]))
            elif match := LINES["ideal"].match(line):
                block["vs_ideal"] = number(match[1])
    return found


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = {key for figures in rounds for key in figures}
    return {
        key: statistics.median(figures[key] for figures in rounds if key in figures) for key in keys
    }


def command(engine: str, args: argparse.Namespace) -> list[str]:
    python = sys.executable if engine == "heddle" else args.peers_python
    workload = [
        *("--runs", str(args.runs), "--sequential", str(args.sequential)),
        *("--rounds", str(args.rounds), "--nodes", str(args.nodes)),
        *("--latency-ms", f"{args.latency_ms:g}"),
    ]
    script, own = ENGINES[engine]
    extra = shlex.split(args.heddle_args) if engine == "heddle" else []
    return [python, str(script), *workload, *own, *extra]


def run(engine: str, args: argparse.Namespace, server_url: str) -> str | None:
    """One engine's benchmark, its output shown as it comes; None if it failed."""
    database = server_url
    if engine != "heddle":  # throughput.py makes a database of its own on the server
        name = f"peers_{engine.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        database = create_database(server_url, name)
    argv = command(engine, args)
    print(f"\n=== {NAMES[engine]}: {shlex.join(argv)}", flush=True)
    lines = []
    with subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database},
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            print(f"  {line}", end="", flush=True)
            lines.append(line)
    if child.returncode:
        print(f"=== {NAMES[engine]} failed (exit {child.returncode})", flush=True)
        return None
    return "".join(lines)


def cell(value: float | None, best: float | None, higher_is_better: bool) -> str:
    if value is None or best is None:
        return "-"
    if higher_is_better:
        ratio = best / value if value else float("inf")
    else:
        ratio = value / best if best else float("nan")
    shown = f"{value:,.0f}" if value >= 1000 else f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{shown} ({ratio:.2f}x)"


def table(
    title: str, results: dict[str, dict[str, float]], engines: list[str], keys: set[str]
) -> None:
    """A Markdown table: a row per figure of `keys`, a column per engine."""
    print(f"\n{title}\n")
    print("| figure | " + " | ".join(NAMES[e] for e in engines) + " |")
    print("|---" * (len(engines) + 1) + "|")
    for key, label, higher in FIGURES:
        if key not in keys:
            continue
        values = {e: results[e].get(key) for e in engines if e in results}
        present = [v for v in values.values() if v is not None]
        if not present:
            continue
        best = max(present) if higher else min(present)
        row = [cell(values.get(e), best, higher) for e in engines]
        print(f"| {label} | " + " | ".join(row) + " |")


def main(args: argparse.Namespace) -> None:
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines {sorted(unknown)}; known: {', '.join(ENGINES)}")
    if set(engines) - {"heddle"} and not Path(args.peers_python).exists():
        raise SystemExit(f"no {args.peers_python}: make -C bench/peers venv")
    outputs: dict[str, str] = {}
    with ExitStack() as stack:
        server_url = os.environ.get("DATABASE_URL")
        if not server_url:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="heddle-peers-")))
            server_url = stack.enter_context(EmbeddedPostgres(work / "postgres")).url
        for engine in engines:
            output = run(engine, args, server_url)
            if output is not None:
                outputs[engine] = output
    parsed = {engine: parse(output) for engine, output in outputs.items()}
    answers = f", the model answering in {args.latency_ms:g} ms" if args.latency_ms else ""
    print(f"\nmachine: {machine()}")
    print(f"workload: chains of {args.nodes} steps{answers}")
    print("ratio: to the best engine's figure (1.00x best; 2.00x twice the time or half the rate)")
    concurrent = {e: median_of(p["concurrent"]) for e, p in parsed.items() if p["concurrent"]}
    if concurrent:
        rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
        every = {key for key, _, _ in FIGURES}
        table(f"{args.runs} concurrent runs{rounds}", concurrent, engines, every)
    sequential = {e: p["sequential"] for e, p in parsed.items() if p["sequential"]}
    if sequential:
        # The span of runs one after the other says nothing the per-run figures do not.
        latency = {"step_p50", "step_p99", "run_p50", "run_p99", "cpu_ms"}
        table(f"one run at a time ({args.sequential} runs)", sequential, engines, latency)
    failed = [NAMES[e] for e in engines if e not in outputs]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs (0 to skip)")
    parser.add_argument("--sequential", type=int, default=20, help="runs one at a time (0 to skip)")
    parser.add_argument("--rounds", type=int, default=3, help="batches of concurrent runs")
    parser.add_argument("--nodes", type=int, default=10, help="steps per chain")
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="the model's answer time (default: instant)"
    )
    parser.add_argument(
        "--engines",
        default=DEFAULT_ENGINES,
        help=f"comma-separated, in order, of: {', '.join(ENGINES)}",
    )
    parser.add_argument(
        "--heddle-args", default="--spawn worker", help="more arguments for throughput.py"
    )
    parser.add_argument(
        "--peers-python",
        default=os.environ.get("PEERS_PYTHON", str(ROOT / ".venv" / "peers" / "bin" / "python")),
        help="the peers' venv interpreter (make -C bench/peers venv)",
    )
    main(parser.parse_args())


if __name__ == "__main__":
    cli()
