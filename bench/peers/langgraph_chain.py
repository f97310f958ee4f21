"""Heddle's throughput workload on LangGraph, checkpointed in PostgreSQL.

A `StateGraph` of `--nodes` async nodes in a chain; each node is a "model call" that
answers after `--latency-ms` with its prompt (as Heddle's `scripted:echo`), the prompt
carrying the previous node's reply. Every run is its own thread (`thread_id`) of an
`AsyncPostgresSaver` on a pool of `--pool` connections, with `durability="sync"` by
default: each step's checkpoint is written before the next step starts, the guarantee
Heddle and DBOS give (`--durability async`, LangGraph's default, writes it while the next
step runs; `exit` only at the end).

Runs in the peers' venv and needs `DATABASE_URL` (a database of its own):

    DATABASE_URL=... .venv/peers/bin/python bench/peers/langgraph_chain.py \
        [--runs 100] [--sequential 20] [--nodes 10] [--latency-ms 0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from bench.machine import machine
from bench.peers.common import Timeline, benchmark, database_url, model, parser, prompt


class Chain(TypedDict, total=False):
    topic: str
    text: str


# Each run's timeline, by thread id: a node's start is the previous step's end.
TIMELINES: dict[str, Timeline] = {}


def step(index: int, latency_s: float) -> Any:
    async def node(state: Chain) -> Chain:
        if index:
            TIMELINES[get_config()["configurable"]["thread_id"]].ends.append(time.monotonic())
        previous = state["text"] if index else state["topic"]
        return {"text": await model(prompt(index, previous), latency_s)}

    return node


def graph(nodes: int, latency_s: float) -> StateGraph[Any]:
    builder: StateGraph[Any] = StateGraph(Chain)
    for index in range(nodes):
        builder.add_node(f"s{index}", step(index, latency_s))
        builder.add_edge(f"s{index - 1}" if index else START, f"s{index}")
    builder.add_edge(f"s{nodes - 1}", END)
    return builder


async def main(args: argparse.Namespace) -> None:
    pool = AsyncConnectionPool(
        database_url(),
        min_size=args.pool,
        max_size=args.pool,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    await pool.open(wait=True)
    try:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        app = graph(args.nodes, args.latency_ms / 1000).compile(checkpointer=saver)

        async def run_one(run_id: str, timeline: Timeline) -> str:
            TIMELINES[run_id] = timeline
            try:
                state = await app.ainvoke(
                    {"topic": "x"},
                    {"configurable": {"thread_id": run_id}},
                    durability=args.durability,
                )
            finally:
                del TIMELINES[run_id]
            return str(state["text"])

        print(f"machine: {machine()}")
        print(
            f"engine: LangGraph {version('langgraph')}, AsyncPostgresSaver"
            f" ({version('langgraph-checkpoint-postgres')}), durability={args.durability},"
            f" pool of {args.pool}"
        )
        answers = f", answering in {args.latency_ms:g} ms" if args.latency_ms else ""
        print(f"workflow: a chain of {args.nodes} async nodes on an echo model{answers}")
        await benchmark(args, run_one)
    finally:
        await pool.close()


if __name__ == "__main__":
    cli = parser(__doc__ or "")
    cli.add_argument("--durability", choices=["sync", "async", "exit"], default="sync")
    asyncio.run(main(cli.parse_args()))
