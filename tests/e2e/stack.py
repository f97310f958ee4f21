"""A real `heddle up` for end-to-end tests: the console script in its own data directory
with free ports, so what is tested is exactly what `make up` runs."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from infra.devstack import free_port

HEDDLE = Path(sys.executable).with_name("heddle")
ROOT = Path(__file__).resolve().parents[2]
FINISHED = ("completed", "failed", "cancelled")


class Up:
    """A running `heddle up` and how to reach it."""

    def __init__(self, data_dir: Path, heddle: Path = HEDDLE, cwd: Path = ROOT) -> None:
        self.heddle, self.cwd = heddle, cwd
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
            HEDDLE_CREDENTIALS_KEY=base64.b64encode(b"k" * 32).decode(),
            COLUMNS="250",  # tables whose ids are read back are not wrapped
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
                [str(self.heddle), "up"],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
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
        """Stop as Ctrl-C does (which stops its PostgreSQL, not always a child process);
        kill what is left when that takes too long."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.interrupt()
        if self.process is not None:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                child.kill()
            self.process.kill()
            self.process.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.heddle), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def wait_for_run(
        self, run_id: str, timeout: float = 30.0, until: tuple[str, ...] = FINISHED
    ) -> dict[str, Any]:
        """The run as the API shows it once its status is one of `until`."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.api}/v1/runs/{run_id}", headers=self.headers())
            if response.status_code == 200:
                last = response.json()
                if last["status"] in until:
                    return last  # type: ignore[no-any-return]
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not reach {until} in {timeout} s; last seen {last}")
