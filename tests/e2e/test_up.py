"""`heddle up` as a user runs it: one command, a plain Kafka client, the API, Ctrl-C.

Each test starts the real `heddle` console script in its own data directory with free
ports, so what is tested is exactly what `make up` runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from aiokafka import AIOKafkaProducer

from infra.devstack import free_port

pytestmark = pytest.mark.e2e
HEDDLE = Path(sys.executable).with_name("heddle")
ROOT = Path(__file__).resolve().parents[2]


class Up:
    """A running `heddle up` and how to reach it."""

    def __init__(self, data_dir: Path) -> None:
        self.api_port, self.kafka_port = free_port(), free_port()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "HEDDLE_API_URL")
        }
        self.env.update(
            HEDDLE_DATA_DIR=str(data_dir),
            HEDDLE_API_PORT=str(self.api_port),
            HEDDLE_KAFKA_PORT=str(self.kafka_port),
        )
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.key_file = data_dir / "admin.key"
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.log = data_dir.parent / f"up-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> str:
        """Start and wait for the banner; returns what it printed."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(HEDDLE), "up"], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if "Press Ctrl-C to stop." in text:
                return text
            if self.process.poll() is not None:
                raise AssertionError(f"heddle up exited with {self.process.returncode}:\n{text}")
            time.sleep(0.1)
        raise AssertionError(f"heddle up did not come up in {timeout} s:\n{self.log.read_text()}")

    def headers(self) -> dict[str, str]:
        """What a client of this stack sends: the admin key `heddle up` wrote down."""
        return {"Authorization": f"Bearer {self.key_file.read_text().strip()}"}

    def interrupt(self, timeout: float = 30.0) -> tuple[int, list[psutil.Process]]:
        """Ctrl-C; returns the exit code and the children that were running before."""
        assert self.process is not None
        children = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code, children

    def kill(self) -> None:
        if self.process is not None:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                child.kill()
            self.process.kill()
            self.process.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HEDDLE), *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
            timeout=60, check=False,
        )


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    stack = Up(tmp_path / "heddle-data")
    try:
        yield stack
    finally:
        stack.kill()


async def _start_run_with_a_plain_kafka_client(bootstrap: str, name: str) -> str:
    run_id = str(uuid.uuid4())
    command = {
        "command_id": str(uuid.uuid4()),
        "type": "StartRun",
        "tenant": "default",
        "actor": "e2e@example.com",
        "payload": {"workflow": "hello", "run_id": run_id, "input": {"name": name}},
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            "heddle.commands", json.dumps(command).encode(), key=run_id.encode()
        )
    finally:
        await producer.stop()
    return run_id


def _wait_for_run(up: Up, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        response = httpx.get(f"{up.api}/v1/runs/{run_id}", headers=up.headers())
        if response.status_code == 200:
            last = response.json()
            if last["status"] in ("completed", "failed", "cancelled"):
                return last  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s; last seen {last}")


async def test_a_start_run_from_a_plain_kafka_client_completes_and_the_cli_agrees(up: Up) -> None:
    banner = up.start()
    assert up.api in banner and up.bootstrap in banner and "hello v1" in banner
    key = up.key_file.read_text().strip()
    assert f"New admin key    {key}" in banner
    assert f'-H "Authorization: Bearer $(cat {up.key_file})"' in banner
    assert up.key_file.stat().st_mode & 0o777 == 0o600
    refused = httpx.get(f"{up.api}/v1/runs")
    assert refused.status_code == 401
    assert "admin.key" in refused.json()["detail"]
    run_id = await _start_run_with_a_plain_kafka_client(up.bootstrap, "Ada")
    run = _wait_for_run(up, run_id)
    assert run["status"] == "completed"
    assert run["variables"]["tier"] == "vip"
    shown = up.cli("runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["variables"] == run["variables"]
    followed = up.cli("run", "hello", "--input", "name=Grace", "--follow", "--json")
    assert followed.returncode == 0, followed.stderr
    assert json.loads(followed.stdout)["variables"]["tier"] == "regular"


async def test_ctrl_c_stops_everything_and_the_store_survives_a_restart(up: Up) -> None:
    up.start()
    run_id = await _start_run_with_a_plain_kafka_client(up.bootstrap, "Ada")
    assert _wait_for_run(up, run_id)["status"] == "completed"
    code, children = up.interrupt()
    assert code == 0
    assert "Heddle stopped." in up.log.read_text()
    assert children, "heddle up should run PostgreSQL and the broker as child processes"
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    up.start()
    assert _wait_for_run(up, run_id)["variables"]["tier"] == "vip"
    assert "New admin key" not in up.log.read_text(), "a restart keeps the key it made"
    events = httpx.get(f"{up.api}/v1/runs/{run_id}/events", headers=up.headers()).json()
    assert events["events"][-1]["type"] == "WorkflowRun.Completed"
    again = await _start_run_with_a_plain_kafka_client(up.bootstrap, "Grace")
    assert _wait_for_run(up, again)["variables"]["tier"] == "regular"
