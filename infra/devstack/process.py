"""A child server process: started, waited for, stopped, never left behind.

`ServerProcess` runs one command with its output in a log file, polls a readiness
check, and stops the child with SIGTERM, then SIGKILL after a grace period. The child
gets its own session (a Ctrl-C in the terminal reaches the parent only, which then
stops the child in order), an `atexit` hook, and on Linux, when started from the main
thread, a parent-death signal so it goes too if the parent is killed outright.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

log = logging.getLogger("heddle.devstack")

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a text file, reading at most `max_bytes` from its end."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - max_bytes))
            text = file.read().decode(errors="replace")
    except OSError:
        return f"({path} is missing)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to SIGTERM the child when this thread's process dies.

    Linux ties the signal to the *thread* that forked, so it is only used from the main
    thread: a server started from a worker thread would otherwise die with that thread.
    """
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: keep it trivial
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class ServerProcess:
    """Base for a launcher of one long-running server process.

    Subclasses implement `start()` with `_spawn()` and `_wait_until()`; `stop()` is
    idempotent and also runs at interpreter exit.
    """

    name = "server"
    stop_timeout = 15.0

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.extra_logs: list[Path] = []
        self.started_in: float | None = None  # seconds from spawn to ready, last start

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def _spawn(
        self, command: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        """Start `command` with stdout and stderr appended to `log_path`."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as output:
            self._process = subprocess.Popen(
                list(command),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # trivial, see its docstring
            )
        atexit.register(self.stop)
        log.debug("%s started: pid %s, log %s", self.name, self._process.pid, log_path)

    def _wait_until(self, ready: Callable[[], bool], timeout: float, started: float) -> None:
        """Poll `ready` until it holds; on exit of the child or timeout stop and raise."""
        deadline = started + timeout
        while True:
            process = self._process
            if process is None:
                raise RuntimeError(f"{self.name} was stopped while starting")
            if process.poll() is not None:
                code = process.returncode
                self.stop()
                raise RuntimeError(
                    f"{self.name} exited with code {code} while starting:\n{self.log_tail()}"
                )
            if ready():
                self.started_in = time.monotonic() - started
                log.info("%s ready in %.1f s", self.name, self.started_in)
                return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"{self.name} was not ready after {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's logs, for error messages."""
        paths = [p for p in [self.log_path, *self.extra_logs] if p is not None]
        if not paths:
            return "(no log)"
        return "\n".join(f"--- {path} (last lines) ---\n{tail(path, lines)}" for path in paths)

    def stop(self) -> None:
        """Terminate the server, kill it after `stop_timeout` seconds; safe to call twice."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            self._signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s: killing it", self.name, self.stop_timeout)
                self._signal(process, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
        # Anything the server forked shares its session's process group.
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
        try:
            os.killpg(process.pid, signum)
        except OSError:
            with contextlib.suppress(OSError):
                process.send_signal(signum)

    def start(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
