"""Settings, read once from the environment and passed in."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from faststream.kafka.security import parse_security
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.commands import DEFAULT_TENANT
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
    # Where a process without the API (`heddle serve --no-api`) serves GET /metrics.
    metrics_port: int = 9464
    tracing: Literal["off", "otlp"] = "off"
    """`otlp`: send spans with OpenTelemetry's OTLP exporter (infra/tracing.py)."""
    kafka_port: int = 9092
    # How every Kafka client of Heddle's connects (docs/security.md): PLAINTEXT (as
    # `heddle up`'s own broker), SSL, or SASL with a username and password (SCRAM or PLAIN),
    # over TLS with SASL_SSL (the CA file, if the system's CAs do not vouch for the broker).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-256"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: Path | None = None
    # A tenant topic made while the intake runs is read within this long (how often every
    # Kafka client refreshes the cluster's metadata).
    kafka_metadata_max_age_ms: int = 30_000
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

    def kafka_security(self) -> BaseSecurity | None:
        """FastStream's security object for these settings (None for PLAINTEXT)."""
        protocol = self.kafka_security_protocol
        if protocol == "PLAINTEXT":
            return None
        tls = protocol in ("SSL", "SASL_SSL")
        context = ssl.create_default_context(cafile=self.kafka_ssl_cafile) if tls else None
        if protocol == "SSL":
            return BaseSecurity(ssl_context=context, use_ssl=True)
        sasl = {"SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512,
                "PLAIN": SASLPlaintext}[self.kafka_sasl_mechanism]  # fmt: skip
        password = self.kafka_password.get_secret_value()
        return sasl(self.kafka_username, password, ssl_context=context, use_ssl=tls)

    def kafka_client(self) -> dict[str, Any]:
        """The keyword arguments of every aiokafka client Heddle makes: the servers, and
        how to authenticate (as the FastStream broker does, from `kafka_security`)."""
        return {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "metadata_max_age_ms": self.kafka_metadata_max_age_ms,
            **parse_security(self.kafka_security()),
        }

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
        # A tenant's own clients publish its commands to its topic (docs/security.md).
        self.tenant_commands = f"{prefix}heddle.commands.tenant."

    def commands_of(self, tenant: str) -> str:
        """The command topic of one tenant: the intake binds its commands to the tenant."""
        return f"{self.tenant_commands}{tenant}"

    def tenant_of(self, topic: str) -> str | None:
        """The tenant whose command topic `topic` is, or None for Heddle's own topics."""
        return topic.removeprefix(self.tenant_commands) if topic.startswith(
            self.tenant_commands) else None  # fmt: skip

    @property
    def tenant_commands_pattern(self) -> str:
        """A regular expression that every tenant's command topic matches."""
        return f"^{re.escape(self.tenant_commands)}.+$"

    def tasks_for(self, capability: str) -> str:
        """Where tasks of `remote` nodes with this capability go."""
        return f"{self.prefix}heddle.tasks.{capability}"

    def all(self) -> list[str]:
        """The topics Heddle makes: its own, and the default tenant's command topic (so
        that the intake's subscription to the tenants' topics always has one to read)."""
        return [
            self.commands,
            self.command_results,
            self.events,
            self.tokens,
            self.dlq,
            self.task_results,
            self.commands_of(DEFAULT_TENANT),
        ]
