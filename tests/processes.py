"""The run worker as production runs it: `heddle serve --role worker --no-api`, a process
of its own against a test's database and topics, its log read as it comes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from infra.devstack import free_port


@dataclass
class WorkerProcess:
    """A spawned worker and the lines it has logged so far (read by a thread, so its
    pipe never fills)."""

    process: subprocess.Popen[bytes]
    metrics_port: int
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace"))
        self.process.stderr.close()

    def logged(self, text: str) -> list[str]:
        """The lines logged so far that contain `text`."""
        return [line for line in list(self.lines) if text in line]

    def kill(self) -> None:
        """SIGKILL: no goodbye to the consumer group, nothing flushed."""
        self.process.kill()
        self.process.wait()
        self.reader.join(timeout=10)


def spawn_worker(
    settings: Any, database_url: str, kafka_bootstrap: str, environ: Mapping[str, str] = {}
) -> WorkerProcess:
    """A worker process with `settings`' topics, groups, partitions, session timeout and
    HTTP tool hosts, and a port of its own for its metrics (`metrics_port`); `environ` adds
    variables (a fake provider's base URL and key)."""
    metrics_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "HEDDLE_TOPIC_PREFIX": settings.topic_prefix,
        "HEDDLE_GROUP_PREFIX": settings.group_prefix,
        "HEDDLE_PARTITIONS": str(settings.partitions),
        "HEDDLE_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "HEDDLE_HTTP_TOOL_HOSTS": settings.http_tool_hosts,
        "HEDDLE_METRICS_PORT": str(metrics_port),
        **environ,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--role", "worker", "--no-api"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return WorkerProcess(process, metrics_port)


@contextmanager
def spawned_workers(
    count: int,
    settings: Any,
    database_url: str,
    kafka_bootstrap: str,
    environ: Mapping[str, str] = {},
) -> Iterator[list[WorkerProcess]]:
    """`count` worker processes, killed at the end (those the test has not killed)."""
    workers = [spawn_worker(settings, database_url, kafka_bootstrap, environ) for _ in range(count)]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.kill()


async def wait_for_line(
    worker: WorkerProcess, text: str, timeout: float = 60, count: int = 1
) -> list[str]:
    """Wait until the worker has logged `count` lines that contain `text`; those lines."""
    async with asyncio.timeout(timeout):
        while len(found := worker.logged(text)) < count:
            if not worker.reader.is_alive() and len(worker.logged(text)) < count:
                log = "".join(worker.lines[-20:])
                raise AssertionError(f"the worker exited before logging {text!r}:\n{log}")
            await asyncio.sleep(0.05)
    return found
