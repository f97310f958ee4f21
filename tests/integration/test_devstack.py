"""The dev-stack launchers start real servers that real clients can use.

Each test starts its own server (not the session fixtures), so that start, stop,
restart and failure behaviour is what is under test.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra.devstack import ApacheKafka, EmbeddedPostgres, Tansu, create_database, free_port
from infra.devstack.postgres import make_url

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str, topic: str) -> bytes:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 60)
        assert isinstance(record.value, bytes)
        return record.value
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topic: str) -> set[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return set(await producer.partitions_for(topic))
    finally:
        await producer.stop()


def _round_trip(bootstrap: str) -> tuple[str, bytes]:
    topic, value = f"devstack-{uuid.uuid4().hex[:8]}", uuid.uuid4().bytes
    asyncio.run(_produce(bootstrap, topic, value))
    assert asyncio.run(_consume_one(bootstrap, topic)) == value
    return topic, value


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


# --- Apache Kafka ---------------------------------------------------------------------


def test_kafka_produces_and_consumes_through_a_consumer_group(tmp_path: Path) -> None:
    with ApacheKafka(tmp_path / "kafka") as kafka:
        assert kafka.bootstrap_servers == f"127.0.0.1:{kafka.port}"
        topic, _ = _round_trip(kafka.bootstrap_servers)
        # Topics are created on first use, with the configured four partitions.
        assert asyncio.run(_partitions(kafka.bootstrap_servers, topic)) == {0, 1, 2, 3}
        pid = kafka.pid
        assert pid is not None
    assert _gone(pid)
    assert (tmp_path / "kafka" / "server.log").stat().st_size > 0


def test_kafka_restart_on_the_same_directory_keeps_records(tmp_path: Path) -> None:
    kafka = ApacheKafka(tmp_path / "kafka")
    with kafka:
        topic, value = _round_trip(kafka.bootstrap_servers)
    kafka.stop()  # idempotent
    with ApacheKafka(tmp_path / "kafka") as again:
        assert asyncio.run(_consume_one(again.bootstrap_servers, topic)) == value


def test_kafka_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port}"):
            ApacheKafka(tmp_path / "kafka", port=port).start()


# --- Tansu ----------------------------------------------------------------------------


def test_tansu_produces_and_consumes(tmp_path: Path) -> None:
    port = free_port()
    with Tansu(port=port, log_dir=tmp_path) as tansu:
        assert tansu.bootstrap_servers == f"127.0.0.1:{port}"
        _round_trip(tansu.bootstrap_servers)
        pid = tansu.pid
        assert pid is not None
    assert _gone(pid)
    tansu.stop()  # idempotent


def test_a_server_that_dies_at_start_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'cannot open the storage engine' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CALF_TANSU_BIN", str(fake))
    tansu = Tansu(log_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"(?s)exited with code 3.*cannot open the storage"):
        tansu.start()
    assert not tansu.running


# --- PostgreSQL -----------------------------------------------------------------------


def test_postgres_answers_and_creates_databases(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as postgres:
        parts = postgres.conninfo_parts()
        assert set(parts) == {"host", "port", "user", "password", "dbname"}
        with psycopg.connect(postgres.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with psycopg.connect(
            psycopg.conninfo.make_conninfo(**parts)
        ) as conn:  # the parts work on their own too
            assert conn.execute("SELECT current_user").fetchone() == (parts["user"],)

        url = create_database(postgres.url, "fresh_one")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("fresh_one",)
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
            assert tables == (0,)
        with pytest.raises(psycopg.errors.DuplicateDatabase):
            create_database(postgres.url, "fresh_one")


def test_postgres_restart_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    postgres = EmbeddedPostgres(data_dir)
    with postgres:
        with psycopg.connect(postgres.url) as conn:
            conn.execute("CREATE TABLE kept (value text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
        server_pid = postgres.pid
        assert server_pid is not None
    postgres.stop()  # idempotent
    assert _gone(server_pid)
    assert not postgres.running

    with EmbeddedPostgres(data_dir) as again, psycopg.connect(again.url) as conn:
        assert conn.execute("SELECT value FROM kept").fetchall() == [("still here",)]


def test_postgres_url_survives_odd_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libpq would otherwise look for the socket of another port or log in as another user.
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGUSER", "nobody")
    with EmbeddedPostgres(tmp_path / "pg") as postgres, psycopg.connect(postgres.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_make_url_round_trips_through_libpq() -> None:
    socket_url = make_url(
        {"host": "/tmp/a dir", "port": "5432", "user": "postgres", "password": "", "dbname": "x"}
    )
    assert psycopg.conninfo.conninfo_to_dict(socket_url) == {
        "host": "/tmp/a dir", "port": "5432", "user": "postgres", "dbname": "x",
    }  # fmt: skip
    tcp = make_url(
        {"host": "db.example", "port": "5433", "user": "u@x", "password": "p:w/d",
         "dbname": "d", "sslmode": "require"}
    )  # fmt: skip
    assert psycopg.conninfo.conninfo_to_dict(tcp) == {
        "host": "db.example", "port": "5433", "user": "u@x", "password": "p:w/d",
        "dbname": "d", "sslmode": "require",
    }  # fmt: skip


@pytest.mark.skipif(os.name != "posix", reason="unix sockets")
def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
