"""Schema migrations on real PostgreSQL: a database made by Heddle before numbered
migrations (`tests/golden/database-before-migrations.sql`, a `pg_dump` of the database
that `heddle up` made, with two runs, a task, keys, a credential and a thread) upgrades
to the same schema as a new one and keeps serving what it held; processes starting at
once apply each migration once; a newer database is refused; a projection whose code's
version changed is rebuilt at the next start, and only that one."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from infra.bootstrap import create_schema
from infra.migrations import Migration, SchemaTooNew, migrate, migrations, schema_version
from tests.conftest import create_database, running_heddle
from tests.integration.helpers import api_client

pytestmark = pytest.mark.integration

BEFORE = Path(__file__).parents[1] / "golden" / "database-before-migrations.sql"
HELLO_RUN = "2032ac82-6adc-410d-9a6b-aab278676f7b"
REFUND_RUN = "229b24ee-34ed-462a-99fd-9b428fed427b"
SHAPE = """
SELECT 'column', table_name || '.' || column_name,
       data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass || '.' || conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


def shape(database_url: str) -> list[tuple[str, str, str]]:
    """Every column, index and constraint of the database's tables."""
    with psycopg.connect(database_url) as conn:
        return [tuple(row) for row in conn.execute(SHAPE)]  # type: ignore[misc]


def restored(postgres_url: str) -> str:
    """A new database holding the dump of one made before migrations."""
    database_url = create_database(postgres_url, f"before_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(BEFORE.read_text())  # type: ignore[arg-type]  # our own fixture
    return database_url


async def test_a_database_made_before_migrations_upgrades_and_serves_what_it_held(
    settings: Any, postgres_url: str, database_url: str, kafka_bootstrap: str
) -> None:
    old = restored(postgres_url)
    with psycopg.connect(old) as conn:
        assert schema_version(conn) == 0
    newest = len(migrations())
    assert create_schema(settings, old) == list(range(1, newest + 1))
    assert create_schema(settings, old) == [], "a second start changes nothing"
    assert create_schema(settings, database_url) == list(range(1, newest + 1))
    assert shape(old) == shape(database_url), "the same schema as a database made now"
    with psycopg.connect(old) as conn:
        assert schema_version(conn) == newest
        assert conn.execute("SELECT name FROM schema_migrations WHERE version = 1").fetchone() == (
            "baseline",
        )

    async with running_heddle(settings, old, kafka_bootstrap) as heddle, api_client(heddle) as api:
        runs = (await api.get("/v1/runs")).json()["items"]
        assert {run["run_id"] for run in runs} == {HELLO_RUN, REFUND_RUN}
        state = (await api.get(f"/v1/runs/{HELLO_RUN}/state")).json()
        assert state["state"]["status"] == "completed"
        [task] = (await api.get("/v1/tasks")).json()["items"]
        assert (task["run_id"], task["status"]) == (REFUND_RUN, "open")
        names = {key["name"] for key in (await api.get("/v1/keys")).json()["items"]}
        assert {"local-admin", "dashboard"} <= names
        [credential] = (await api.get("/v1/credentials")).json()["items"]
        assert credential["id"] == "team-openai"
        [thread] = (await api.get("/v1/threads")).json()["items"]
        assert thread["title"] == "before migrations"


def test_a_projection_whose_version_changed_is_rebuilt_and_no_other(
    settings: Any, postgres_url: str
) -> None:
    database_url = restored(postgres_url)
    told: list[str] = []
    create_schema(settings, database_url, announce=told.append)
    assert told == [], "a database from before versions is taken as built by this code"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE projection_versions SET version = 0 WHERE projection = 'tasks'")
        conn.execute("DELETE FROM tasks")
        conn.execute("UPDATE runs SET workflow = 'untouched'")
    create_schema(settings, database_url, announce=told.append)
    assert told[0] == "rebuilding tasks from the store: their code changed"
    assert told[1].startswith("rebuilt tasks from ")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT run_id::text, status FROM tasks").fetchall() == [
            (REFUND_RUN, "open")
        ]
        assert {w for (w,) in conn.execute("SELECT workflow FROM runs")} == {"untouched"}
        versions = conn.execute("SELECT DISTINCT version FROM projection_versions").fetchall()
        assert versions == [(1,)]
    told.clear()
    create_schema(settings, database_url, announce=told.append)
    assert told == []


def test_processes_starting_at_once_apply_each_migration_once(database_url: str) -> None:
    # Neither statement may run twice: a second CREATE TABLE of the same name fails.
    slow = [
        Migration(1, "first", "SELECT pg_sleep(0.5); CREATE TABLE raced_one (x int)"),
        Migration(2, "second", "CREATE TABLE raced_two (x int)"),
    ]
    applied: list[list[int]] = []
    failures: list[BaseException] = []

    def start() -> None:
        try:
            with psycopg.connect(database_url) as conn:
                applied.append(migrate(conn, slow))
        except BaseException as error:
            failures.append(error)

    starting = [threading.Thread(target=start) for _ in range(3)]
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join()
    assert not failures
    assert sorted(applied) == [[], [], [1, 2]]


def test_a_database_migrated_by_a_newer_heddle_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        migrate(conn)
        newer = len(migrations()) + 1
        conn.execute("INSERT INTO schema_migrations VALUES (%s, 'from the future')", [newer])
        with pytest.raises(SchemaTooNew, match=f"at version {newer}"):
            migrate(conn)
