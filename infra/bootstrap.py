"""The composition root: `build(settings, **overrides)` makes Heddle's ports and starts
nothing (connections open when a role starts: infra/runtime.py). A test overrides a port
(`build(settings, llm=fake)`) instead of patching; `create_schema` makes the tables and
applies the schema's migrations (infra/migrations/)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import psycopg
from faststream.kafka import KafkaBroker
from psycopg_pool import AsyncConnectionPool

from domain.llm import RetryPolicy
from handlers.reactions.tools import ToolRegistry, builtin_tools
from infra.credentials import CredentialStore
from infra.documents import Documents
from infra.http_tools import HttpTools, ToolRunner, parse_headers, register_http_tools
from infra.kafka import TokenPublisher, create_broker
from infra.llm.retrying import RetryingLlm
from infra.llm.router import ProviderRouter
from infra.migrations import SCHEMA_LOCK, migrate
from infra.projector import rebuild_changed
from infra.settings import Settings, Topics
from infra.store import EventStore, Writer, store_environment


def create_schema(
    settings: Settings, database_url: str, announce: Callable[[str], None] | None = None
) -> list[int]:
    """Create the event store's tables (the `eventsourcing` library's), apply the
    migrations of Heddle's own, then rebuild each projection whose code's version changed
    (telling `announce`, the log by default), under the schema lock; the migrations applied
    now."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [SCHEMA_LOCK])
        store = EventStore(env=store_environment(database_url, 0, create_tables=True))
        try:
            applied = migrate(conn)
            rebuild_changed(database_url, store, *([announce] if announce else []))
        finally:
            store.close()
            conn.execute("SELECT pg_advisory_unlock(%s)", [SCHEMA_LOCK])
        return applied


@dataclass
class Ports:
    """Everything Heddle's roles and its API use, built from the settings."""

    settings: Settings
    topics: Topics
    store: EventStore
    writer: Writer
    broker: KafkaBroker
    reads: AsyncConnectionPool[Any]
    credentials: CredentialStore
    llm: ProviderRouter
    retry_policy: RetryPolicy
    complete_llm: RetryingLlm
    tools: ToolRegistry
    http_tools: HttpTools
    run_tool: ToolRunner
    documents: Documents
    tokens: TokenPublisher


def build(settings: Settings, **overrides: Any) -> Ports:
    """Make the ports of `settings` (its `database_url` and `kafka_bootstrap_servers` must
    be set); each keyword replaces the port of that name, and the ports made after it
    use the replacement. Connects nothing, starts nothing."""
    unknown = set(overrides) - {f.name for f in fields(Ports)}
    if unknown:
        raise TypeError(f"build() has no ports named {sorted(unknown)}")
    database_url, servers = settings.database_url, settings.kafka_bootstrap_servers
    if not database_url or not servers:
        raise ValueError("build() needs the settings' database_url and kafka_bootstrap_servers")
    made: dict[str, Any] = {"settings": settings}

    def port(name: str, make: Callable[[], Any]) -> Any:
        made[name] = overrides[name] if name in overrides else make()
        return made[name]

    topics = port("topics", lambda: Topics(settings.topic_prefix))
    port("store", lambda: EventStore(env=store_environment(
        database_url, settings.aggregate_cache_size, create_tables=False,
        wait_seconds=settings.db_wait_seconds,
    )))  # fmt: skip
    port("writer", Writer)
    port("broker", lambda: create_broker(settings, servers))
    reads = port("reads", lambda: AsyncConnectionPool(
        database_url, min_size=1, max_size=8, open=False, timeout=settings.db_wait_seconds,
        kwargs={"connect_timeout": settings.db_wait_seconds},
    ))  # fmt: skip
    credentials = port("credentials", lambda: CredentialStore(reads, settings.credentials_key))
    llm = port("llm", lambda: ProviderRouter(settings.providers, credentials=credentials))
    policy = port("retry_policy", RetryPolicy)
    port("complete_llm", lambda: RetryingLlm(llm, policy))
    tools = port("tools", builtin_tools)
    http_tools = port("http_tools", lambda: HttpTools(
        settings.allowed_hosts,
        parse_headers(settings.http_tool_headers.get_secret_value()),
        settings.http_tool_max_response_bytes,
    ))  # fmt: skip
    if "tools" not in overrides:
        register_http_tools(tools, settings.http_tools.get_secret_value(), http_tools)
    port("run_tool", lambda: ToolRunner(tools, http_tools))
    port("documents", lambda: Documents(reads))
    port("tokens", lambda: TokenPublisher(settings, topics.tokens))
    return Ports(**made)
