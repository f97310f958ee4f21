"""Heddle's throughput workload on DBOS, with its PostgreSQL system database.

The chain is one `@DBOS.workflow` (async) calling `--nodes` times a `@DBOS.step`, the
"model call" that answers after `--latency-ms` with its prompt (as Heddle's
`scripted:echo`), each prompt carrying the previous reply. DBOS records the workflow's
start, each step's output before the workflow goes on, and the workflow's result in the
system database (a pool of `--pool` connections, DBOS's default 20). Every run is its
own workflow id.

Runs in the peers' venv and needs `DATABASE_URL` (a database of its own):

    DATABASE_URL=... .venv/peers/bin/python bench/peers/dbos_chain.py \
        [--runs 100] [--sequential 20] [--nodes 10] [--latency-ms 0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dbos import DBOS, DBOSConfig, SetWorkflowID

from bench.machine import machine
from bench.peers.common import Timeline, benchmark, database_url, model, parser, prompt

# Each run's timeline, by workflow id.
TIMELINES: dict[str, Timeline] = {}


@DBOS.step()
async def model_call(text: str, latency_s: float) -> str:
    return await model(text, latency_s)


@DBOS.workflow()
async def chain(topic: str, nodes: int, latency_s: float) -> str:
    timeline = TIMELINES[str(DBOS.workflow_id)]
    text = topic
    for index in range(nodes):
        text = await model_call(prompt(index, text), latency_s)
        timeline.ends.append(time.monotonic())
    return text


async def main(args: argparse.Namespace) -> None:
    config: DBOSConfig = {
        "name": "bench-chain",
        "system_database_url": database_url(),
        "sys_db_pool_size": args.pool,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()  # in the running loop: the workflows run on it
    try:

        async def run_one(run_id: str, timeline: Timeline) -> str:
            TIMELINES[run_id] = timeline
            try:
                with SetWorkflowID(run_id):
                    return await chain("x", args.nodes, args.latency_ms / 1000)
            finally:
                del TIMELINES[run_id]

        print(f"machine: {machine()}")
        print(f"engine: DBOS {version('dbos')}, PostgreSQL system database, pool of {args.pool}")
        answers = f", answering in {args.latency_ms:g} ms" if args.latency_ms else ""
        print(f"workflow: a workflow of {args.nodes} async steps on an echo model{answers}")
        await benchmark(args, run_one)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    asyncio.run(main(parser(__doc__ or "").parse_args()))
