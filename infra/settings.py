"""Settings, read once from the environment and passed in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.llm.settings import ProviderSettings


class Settings(BaseSettings):
    """Heddle's settings. Every field can be set by its environment variable."""

    model_config = SettingsConfigDict(env_prefix="HEDDLE_", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    data_dir: Path = Path(".heddle")
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    kafka_port: int = 9092
    topic_prefix: str = ""
    group_prefix: str = "heddle"
    partitions: int = 4
    max_body_bytes: int = 1024 * 1024
    # A command published to Kafka may be this large as JSON (the broker's default limit,
    # `message.max.bytes`, is 1 MiB + 12 bytes; events stay under it by the claim check).
    max_message_bytes: int = 1_000_000
    # Uploads to POST /v1/documents may be this large (the other requests: max_body_bytes).
    document_max_bytes: int = 10 * 1024 * 1024
    # A run's history imported to POST /v1/runs/import may be this large: an export holds
    # every large value whole, in each event that has it (a 5 MB answer: over 20 MB).
    import_max_bytes: int = 64 * 1024 * 1024
    batch_size: int = 500
    fetch_max_wait_ms: int = 10
    idle_poll_ms: int = 25
    # The projector waits up to this long for a fuller batch: it reads and writes each
    # touched run's row once per batch, so fewer batches cost less; read models lag as much.
    projector_gather_ms: int = 100
    # How often the timer role looks for due timers: how late a timer may fire, at most.
    timer_poll_ms: int = 250
    session_timeout_ms: int = 10_000
    # How long a request (or a role) waits for a PostgreSQL connection, and the API for
    # the broker to take a command, before it answers 503 (the roles try again).
    db_wait_seconds: int = 2
    publish_timeout_seconds: float = 3.0
    # The run worker stops reading new events while this many calls are in flight.
    worker_max_in_flight: int = 2000
    # The run worker records how far its partitions' work is saved (and commits that to
    # Kafka) at most this often: after a crash it reads again at most this much of saved
    # work, which repeats nothing (each node attempt is checked against the stored run).
    worker_commit_interval_ms: int = 200
    # Runs (and other aggregates) a process keeps in memory: as many as the worker has
    # work in flight for; a run waiting on a person or a timer is read again when it moves.
    aggregate_cache_size: int = 2000
    dlq_after_attempts: int = 5
    examples_dir: Path | None = None
    # HTTP tools may call these hosts only: comma-separated, `*.example.com` for subdomains.
    http_tool_hosts: str = ""
    # Headers the worker adds per host (credentials), JSON: {"host": {"Header": "value"}}.
    http_tool_headers: SecretStr = SecretStr("")
    http_tool_max_response_bytes: int = 256 * 1024
    # HTTP tools every workflow may use, JSON: {"name": {description, url, ...}} as under a
    # definition's `tools:`; their headers may carry credentials (never recorded).
    http_tools: SecretStr = SecretStr("")
    # The providers' keys and base URLs (OPENAI_API_KEY, ANTHROPIC_BASE_URL, ...: see
    # ProviderSettings), read from the environment with the rest.
    providers: ProviderSettings = Field(default_factory=ProviderSettings.from_process)
    # Encrypts stored provider credentials: base64 of 32 random bytes.
    credentials_key: SecretStr | None = None
    # The `heddle` CLI's API: HEDDLE_API_URL (default: the API of the running `heddle up`)
    # and HEDDLE_API_KEY (default: `heddle up`'s admin key, sent to its own API only).
    api_url: str | None = None
    api_key: SecretStr | None = None

    def with_environment(self, environ: Mapping[str, str]) -> Settings:
        """These settings with the providers and the credentials key of `environ` instead
        of the process's (a test's fake providers, a second tenant's keys)."""
        changes: dict[str, Any] = {
            "providers": ProviderSettings.from_env(environ),
            "credentials_key": SecretStr(environ["HEDDLE_CREDENTIALS_KEY"])
            if environ.get("HEDDLE_CREDENTIALS_KEY")
            else None,
        }
        return self.model_copy(update=changes)

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.http_tool_hosts.split(",") if h.strip())


class Topics:
    """Topic names, optionally prefixed so that tests and tenants of a cluster stay apart."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.commands = f"{prefix}heddle.commands"
        self.command_results = f"{prefix}heddle.command-results"
        self.events = f"{prefix}heddle.events"
        self.tokens = f"{prefix}heddle.tokens"
        self.dlq = f"{prefix}heddle.dlq"
        self.task_results = f"{prefix}heddle.task-results"

    def tasks_for(self, capability: str) -> str:
        """Where tasks of `remote` nodes with this capability go."""
        return f"{self.prefix}heddle.tasks.{capability}"

    def all(self) -> list[str]:
        return [
            self.commands,
            self.command_results,
            self.events,
            self.tokens,
            self.dlq,
            self.task_results,
        ]
