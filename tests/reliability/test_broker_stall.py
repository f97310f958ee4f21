"""The broker stalls (its JVM SIGSTOPped, as a long GC pause or a frozen VM looks) while
model calls are in flight, then resumes; or it restarts. During a stall the API answers a
command with 503 and the command's id instead of hanging, reads keep answering, and a
command a Kafka client published meanwhile runs once the broker is back. Either way every
run completes with each node recorded once, and the read models equal a rebuild. This
module starts a Kafka of its own (small heap), so the other tests' broker never stops."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from infra.devstack import ApacheKafka
from infra.devstack.process import free_port
from tests.conftest import running_heddle
from tests.fakes.llm_servers import FakeLlmServer
from tests.integration.helpers import api_client, problem_of, publish, start_run, wait_for_run
from tests.processes import spawned_workers, wait_for_line
from tests.reliability.conftest import FRONT_ROLES, completions, once_each
from tests.reliability.test_outages import (
    dead_letters,
    rebuilt_equals_live,
    slowly,
    start_by_kafka,
)
from tests.reliability.test_scale_out import NODES, triage

RUNS = 10
STALL_S = 45
"""As issue 14 measured it: longer than the consumers' session (6 s here), the API's
publish wait and a producer's request timeout (40 s)."""


@pytest.fixture(scope="module")
def stalling_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    port = free_port()  # fixed, so that a restart keeps the clients' address
    with ApacheKafka(tmp_path_factory.mktemp("kafka-stall"), port=port, heap="256m") as server:
        yield server


@pytest.fixture
async def front(
    settings: Any, database_url: str, stalling_kafka: ApacheKafka
) -> AsyncIterator[Any]:
    servers = stalling_kafka.bootstrap_servers
    async with running_heddle(settings, database_url, servers, roles=FRONT_ROLES) as heddle:
        yield heddle


async def test_a_stalled_broker_holds_no_request_and_loses_no_command(
    front: Any,
    settings: Any,
    database_url: str,
    stalling_kafka: ApacheKafka,
    openai: FakeLlmServer,
    provider: dict[str, str],
) -> None:
    openai.answer = slowly
    servers = stalling_kafka.bootstrap_servers
    pid = stalling_kafka.pid
    assert pid is not None
    async with api_client(front) as client:
        await publish(client, triage())
        with spawned_workers(1, settings, database_url, servers, provider) as [worker]:
            run_ids = [await start_run(client, "triage", {"ticket": f"T{n}"}) for n in range(RUNS)]
            await wait_for_line(worker, "calling ")
            os.kill(pid, signal.SIGSTOP)
            try:
                during = asyncio.create_task(start_by_kafka(servers, front.topics.commands))
                refused = await client.post(
                    "/v1/runs", json={"workflow": "triage", "input": {"ticket": "x"}}, timeout=15
                )
                listed = await client.get("/v1/runs", timeout=15)
                ready = await client.get("/readyz", timeout=15)
                await asyncio.sleep(STALL_S)
            finally:
                os.kill(pid, signal.SIGCONT)
            run_ids.append(await asyncio.wait_for(during, 120))
            runs = [await wait_for_run(client, run_id, timeout=120) for run_id in run_ids]
            completed = await completions(client, run_ids)
    assert refused.status_code == 503, refused.text
    problem_of(refused, 503)
    assert refused.headers["retry-after"].isdigit()
    assert refused.json()["unavailable"] == "kafka"
    assert refused.json()["command_id"] in refused.json()["detail"], "says where to look"
    assert listed.status_code == 200, "reads need only PostgreSQL"
    assert ready.status_code == 503
    assert ready.json()["checks"]["kafka"].startswith("unavailable")
    assert [run["status"] for run in runs] == ["completed"] * (RUNS + 1)
    assert completed == once_each(run_ids, NODES), "each node recorded as completed once"
    assert await dead_letters(servers, front.topics.dlq) == 0
    differences = await rebuilt_equals_live(database_url, front.store, servers, front.topics.events)
    assert differences is None, f"the read models differ from a rebuild:\n{differences}"


async def test_a_restarted_broker_loses_no_run_and_no_command(
    front: Any,
    settings: Any,
    database_url: str,
    stalling_kafka: ApacheKafka,
    openai: FakeLlmServer,
    provider: dict[str, str],
) -> None:
    openai.answer = slowly
    servers = stalling_kafka.bootstrap_servers
    async with api_client(front) as client:
        await publish(client, triage())
        with spawned_workers(1, settings, database_url, servers, provider) as [worker]:
            run_ids = [await start_run(client, "triage", {"ticket": f"R{n}"}) for n in range(RUNS)]
            await wait_for_line(worker, "calling ")
            await asyncio.to_thread(stalling_kafka.stop)
            await asyncio.to_thread(stalling_kafka.start)
            run_ids.append(await start_by_kafka(servers, front.topics.commands))
            runs = [await wait_for_run(client, run_id, timeout=120) for run_id in run_ids]
            completed = await completions(client, run_ids)
    assert [run["status"] for run in runs] == ["completed"] * (RUNS + 1)
    assert completed == once_each(run_ids, NODES), "each node recorded as completed once"
    assert await dead_letters(servers, front.topics.dlq) == 0
    differences = await rebuilt_equals_live(database_url, front.store, servers, front.topics.events)
    assert differences is None, f"the read models differ from a rebuild:\n{differences}"
