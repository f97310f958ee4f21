"""Read models are derived: dropping and rebuilding one gives the same rows."""

from __future__ import annotations

import asyncio
import hashlib

import psycopg

from infra.projector import PROJECTIONS, rebuild
from tests.integration.helpers import api_client, example, publish, wait_for_command, wait_for_run


def table_digest(database_url: str, table: str) -> tuple[int, str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(f"SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1").fetchall()
    return len(rows), hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()


async def _until_rows(database_url: str, table: str) -> None:
    for _ in range(200):
        if table_digest(database_url, table)[0]:
            return
        await asyncio.sleep(0.05)


async def test_rebuilding_each_projection_gives_identical_rows(heddle, database_url) -> None:
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        names = ["Ada", "Grace", "Alan", "Ada Lovelace", "Barbara"]
        started = await asyncio.gather(
            *(
                client.post("/v1/runs", json={"workflow": "hello", "input": {"name": n}})
                for n in names
            )
        )
        for response in started:
            await wait_for_run(client, response.json()["run_id"])
        # A run that waits on a person and one that waits on a timer: rows for tasks and timers.
        # And a run in a chat: rows for threads and their messages (its greeting).
        await publish(client, example("approval"))
        await publish(client, example("reminder"))
        await publish(client, example("chat"))
        waiting = [
            (await client.post("/v1/runs", json={"workflow": workflow, "input": input})).json()
            for workflow, input in (
                ("refund-approval", {"customer": "Ada", "amount": 5}),
                ("reminder", {"about": "tea"}),
                ("renewal-chat", {"customer": "Acme", "arr": 1000}),
            )
        ]
        for run in waiting:
            await wait_for_run(client, run["run_id"], status={"running"})
        await _until_rows(database_url, "tasks")
        await _until_rows(database_url, "timers")
        # A run whose exit action saves a document: rows for artifacts.
        await publish(client, example("actions"))
        brief = (
            await client.post(
                "/v1/runs",
                json={
                    "workflow": "renewal-brief",
                    "input": {"customer": "Acme", "arr": 10, "days_to_renewal": 5},
                },
            )
        ).json()
        await wait_for_run(client, brief["run_id"])
        await _until_rows(database_url, "artifacts")
        await _until_rows(database_url, "thread_messages")
        # A schedule that fired, then paused: rows for schedules and their ticks.
        every = {"name": "greeter", "workflow": "hello", "every": "1s", "input": {"name": "Ada"}}
        await client.post("/v1/schedules", json=every)
        await _until_rows(database_url, "schedule_fires")
        paused = (await client.post("/v1/schedules/greeter/pause")).json()
        await wait_for_command(client, paused["command_id"])
        shown = await client.get(
            "/v1/schedules/greeter", headers={"X-Heddle-Wait-For-Command": paused["command_id"]}
        )
        for fire in shown.json()["fires"]:
            await wait_for_run(client, fire["run_id"])
        # A customer a playbook recommends a workflow for: rows for customers and queues.
        playbook = {"name": "care", "rules": [{"id": "all", "workflow": "hello", "stage": "now"}]}
        assert (await client.put("/v1/playbooks/care", json=playbook)).status_code == 200
        await client.put("/v1/customers/acme", json={"name": "Acme", "owner": "maya"})
        await _until_rows(database_url, "queue_items")
        [item] = (await client.get("/v1/queues/maya")).json()["items"]
        await client.post(f"/v1/queues/maya/items/{item['item_id']}/snooze", json={"until": "1h"})
        await _until_rows(database_url, "queue_snoozes")
        await _until_rows(database_url, "playbook_versions")
    for name, projection in PROJECTIONS.items():
        for table in projection.TABLES:
            before = table_digest(database_url, table)
            assert before[0] > 0, f"{table} is empty before the rebuild"
            count = await asyncio.to_thread(rebuild, database_url, heddle.store, name)
            assert count > 0
            assert table_digest(database_url, table) == before, f"{table} differs after rebuild"


async def hello_finished(heddle) -> None:
    """A run of `examples/hello.yaml`, once it has finished."""
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        started = (
            await client.post("/v1/runs", json={"workflow": "hello", "input": {"name": "Ada"}})
        ).json()
        await wait_for_run(client, started["run_id"])


async def test_the_cli_rebuilds_projections_by_name_or_all_of_them(heddle, database_url) -> None:
    import os
    import sys

    await hello_finished(heddle)
    before = table_digest(database_url, "runs")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "projections",
        "rebuild",
        "run_history",
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert "rebuilt run_history from" in stdout.decode()
    assert table_digest(database_url, "runs") == before
    every = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "projections",
        "rebuild",
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await every.communicate()
    assert every.returncode == 0, stderr.decode()
    assert "rebuilt run_history, run_timeline, definitions" in stdout.decode()
    assert table_digest(database_url, "runs") == before


async def test_an_event_the_relay_published_twice_into_one_batch_counts_once(
    heddle, database_url
) -> None:
    """The relay publishes at least once: after a restart an event may come again, even
    in the same batch as its first copy. A node's attempt counts its model call once."""
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        started = await client.post(
            "/v1/runs", json={"workflow": "hello", "input": {"name": "Ada"}}
        )
        run_id = started.json()["run_id"]
        await wait_for_run(client, run_id, timeout=60)
        events = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
        before = table_digest(database_url, "node_attempts")
        with psycopg.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM node_attempts WHERE run_id = %s", [run_id])
            # sent again from just after the model node's start (its answer onwards)
            first = next(
                i
                for i, e in enumerate(events)
                if e["type"] == "WorkflowRun.NodeStarted" and e["data"]["node_id"] == "greet"
            )
            PROJECTIONS["node_attempts"].project(events + events[first + 1 :], cur)
        after = table_digest(database_url, "node_attempts")
    assert after == before


async def test_a_rebuild_on_a_terminal_shows_its_progress_and_a_pipe_gets_none(
    heddle, database_url
) -> None:
    import os
    import pty
    import sys

    await hello_finished(heddle)
    told: list[tuple[int, int]] = []
    await asyncio.to_thread(
        rebuild, database_url, heddle.store, page=3, progress=lambda *at: told.append(at)
    )
    last = told[-1][1]
    assert told[-1] == (last, last), "the last page reaches the newest position"
    assert len(told) > 1
    assert [at for at, _ in told] == sorted(at for at, _ in told)

    command = [sys.executable, "-m", "api.cli", "projections", "rebuild", "run_history"]
    env = {**os.environ, "DATABASE_URL": database_url, "TERM": "xterm", "COLUMNS": "120"}
    primary, terminal = pty.openpty()
    shown = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=terminal
    )
    os.close(terminal)
    await shown.wait()
    drawn = b""
    while chunk := await asyncio.to_thread(_read_all, primary):
        drawn += chunk
    os.close(primary)
    assert shown.returncode == 0
    assert b"rebuilding" in drawn, drawn
    assert f"{last}/{last}".encode() in drawn, drawn
    piped = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await piped.communicate()
    assert (piped.returncode, stderr) == (0, b"")
    assert b"rebuilt run_history from" in stdout


def _read_all(fd: int) -> bytes:
    """What is left to read on a terminal whose other end is closed."""
    import os

    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other end is closed and nothing is left
        return b""
