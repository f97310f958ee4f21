"""Kafka secured like the API (docs/security.md): a Kafka of the module's own with a
SASL_PLAINTEXT listener (SCRAM) and the StandardAuthorizer, each of Heddle's roles
running as its own principal with the ACLs docs/security.md lists for it, and tenants whose
principals may write their own command topic and nothing else. A tenant starts runs on
its topic; it cannot write Heddle's `heddle.commands` or another tenant's topic; what
it sends there in another tenant's name, or as Heddle itself, is rejected and recorded;
no one without a password, and no tenant, reads the topics that carry tenant data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from pydantic import SecretStr

from domain.commands import receipt_id
from handlers.unit_of_work import UnitOfWork
from infra.devstack import ApacheKafka, create_database
from infra.devstack.kafka import Acl, role_acls
from infra.kafka import create_topics, ensure_topics
from infra.settings import Settings, Topics
from tests.conftest import isolated_settings, running_heddle
from tests.integration.helpers import api_client, example, wait_for_run

ROLES = ("intake", "relay", "worker", "projector", "timers", "api")
TENANTS = ("acme", "globex")
USERS = {
    "admin": "admin-secret",  # the broker's own super user
    **{f"heddle-{role}": f"{role}-secret" for role in ROLES},
    **{tenant: f"{tenant}-secret" for tenant in TENANTS},
}
WAIT_S = 30.0
"""How long a test waits for the intake to decide a command."""


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    with ApacheKafka(
        tmp_path_factory.mktemp("kafka-sasl"), heap="256m", sasl_users=USERS
    ) as server:
        yield server


def as_principal(settings: Settings, user: str) -> Settings:
    return settings.model_copy(
        update={"kafka_username": user, "kafka_password": SecretStr(USERS[user])}
    )


@pytest.fixture(scope="module")
async def heddle(
    secured_kafka: ApacheKafka, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Any]:
    """Each role in a Heddle of its own, as its own principal (`heddle-<role>`) with the
    ACLs docs/security.md lists for it; the topics (and the tenants' topics) made
    beforehand by the super user, as an operator does. The API's Heddle is returned."""
    servers = secured_kafka.bootstrap_servers
    settings = isolated_settings(tmp_path_factory.mktemp("heddle")).model_copy(
        update={
            "kafka_bootstrap_servers": servers,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
        }
    )
    topics = Topics(settings.topic_prefix)
    admin = as_principal(settings, "admin")
    await ensure_topics(admin, topics)
    await create_topics(admin, [topics.commands_of(t) for t in TENANTS], 1)
    acls = role_acls(topics, settings.group_prefix)
    heddles = [acl for role in ROLES for acl in acls[role]]
    tenants = [Acl(f"User:{t}", "WRITE", "TOPIC", topics.commands_of(t)) for t in TENANTS]
    await asyncio.to_thread(secured_kafka.create_acls, [*heddles, *tenants])
    database_url = create_database(postgres_url, f"test_{uuid.uuid4().hex[:16]}")
    async with contextlib.AsyncExitStack() as stack:
        for role in ROLES:
            instance = await stack.enter_async_context(
                running_heddle(
                    as_principal(settings, f"heddle-{role}"), database_url, servers, roles=(role,)
                )
            )
        for tenant in TENANTS:
            await instance.publish_workflow(example("hello"), tenant, "operator")
        yield instance


def as_user(kafka: ApacheKafka, user: str) -> dict[str, Any]:
    return {"bootstrap_servers": kafka.bootstrap_servers, **kafka.client_options(user)}


async def send(kafka: ApacheKafka, user: str, topic: str, command: dict[str, Any]) -> None:
    """Publish `command` to `topic` as `user` (SCRAM), waiting for the broker's answer."""
    producer = AIOKafkaProducer(**as_user(kafka, user), request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, json.dumps(command).encode())
    finally:
        await producer.stop()


async def receipt(heddle: Any, tenant: str, command_id: str) -> Any:
    """The command's receipt once the intake has decided it (within WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = await heddle.writer.run(
            UnitOfWork(heddle.store).get, receipt_id(tenant, command_id)
        )
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no receipt for {tenant}/{command_id} after {WAIT_S} s")


async def published_result(
    kafka: ApacheKafka, topic: str, command: dict[str, Any]
) -> dict[str, Any]:
    """The command's receipt as the intake published it on `topic` (read as the super
    user: a tenant may not read it)."""
    consumer = AIOKafkaConsumer(topic, **as_user(kafka, "admin"), auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key == command["command_id"].encode():
                        return json.loads(record.value or b"{}")  # type: ignore[no-any-return]
    finally:
        await consumer.stop()
    raise AssertionError(f"no receipt of {command['command_id']} on {topic} in {WAIT_S} s")


def start_run(tenant: str | None = None, type_: str = "StartRun") -> dict[str, Any]:
    command: dict[str, Any] = {
        "command_id": str(uuid.uuid4()),
        "type": type_,
        "actor": "acme-backend",
        "payload": {"workflow": "hello", "run_id": str(uuid.uuid4()), "input": {"name": "Ada"}},
    }
    return command if tenant is None else {**command, "tenant": tenant}


async def test_a_tenant_starts_a_run_on_its_own_topic(
    heddle: Any, secured_kafka: ApacheKafka
) -> None:
    command = start_run("acme")
    await send(secured_kafka, "acme", heddle.topics.commands_of("acme"), command)
    accepted = await receipt(heddle, "acme", command["command_id"])
    assert (accepted.outcome, accepted.actor) == ("accepted", "acme-backend"), accepted.reason
    async with api_client(heddle, tenant="acme") as client:
        run = await wait_for_run(client, command["payload"]["run_id"])
    assert run["status"] == "completed"


async def test_a_tenant_cannot_write_heddles_topic_or_another_tenants(
    heddle: Any, secured_kafka: ApacheKafka
) -> None:
    for topic in (heddle.topics.commands, heddle.topics.commands_of("globex")):
        with pytest.raises(TopicAuthorizationFailedError):
            await send(secured_kafka, "acme", topic, start_run("globex"))


async def test_a_command_in_another_tenants_name_is_rejected_and_recorded(
    heddle: Any, secured_kafka: ApacheKafka
) -> None:
    forged = start_run("globex")
    await send(secured_kafka, "acme", heddle.topics.commands_of("acme"), forged)
    rejected = await receipt(heddle, "acme", forged["command_id"])
    assert rejected.outcome == "rejected"
    assert rejected.reason == (
        "this topic takes the commands of tenant 'acme' only; the command names tenant 'globex'"
    )
    async with api_client(heddle, tenant="globex") as client:
        missing = await client.get(f"/v1/runs/{forged['payload']['run_id']}")
        assert missing.status_code == 404
    async with api_client(heddle, tenant="acme") as client:
        seen = (await client.get(f"/v1/commands/{forged['command_id']}")).json()
    assert (seen["status"], seen["reason"]) == ("rejected", rejected.reason)
    published = await published_result(secured_kafka, heddle.topics.command_results, forged)
    assert (published["tenant"], published["status"]) == ("acme", "rejected")


@pytest.mark.parametrize(
    ("type_", "reason"),
    [
        ("FireTimer", "FireTimer is sent by Heddle itself (the timer role), never by a tenant"),
        ("CompleteSubworkflow", "CompleteSubworkflow is sent by Heddle itself (the run worker)"),
        ("ConfigureTenant", "ConfigureTenant is an admin command"),
    ],
)
async def test_heddles_own_and_admin_commands_are_rejected_on_a_tenants_topic(
    heddle: Any, secured_kafka: ApacheKafka, type_: str, reason: str
) -> None:
    command = start_run("acme", type_)
    await send(secured_kafka, "acme", heddle.topics.commands_of("acme"), command)
    rejected = await receipt(heddle, "acme", command["command_id"])
    assert rejected.outcome == "rejected"
    assert reason in rejected.reason


async def test_no_one_without_a_password_or_heddles_acls_reads_tenant_data(
    heddle: Any, secured_kafka: ApacheKafka
) -> None:
    topics = heddle.topics
    carrying = await heddle_topics(secured_kafka, topics.prefix)
    assert {topics.events, topics.commands, topics.command_results, topics.tokens,
            topics.commands_of("acme"), topics.commands_of("globex")} <= set(carrying)  # fmt: skip
    servers = secured_kafka.bootstrap_servers
    anonymous = AIOKafkaConsumer(bootstrap_servers=servers, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await anonymous.start()
    await anonymous.stop()
    wrong = {**as_user(secured_kafka, "acme"), "sasl_plain_password": "guessed"}
    guessing = AIOKafkaConsumer(**wrong, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await guessing.start()
    await guessing.stop()
    tenant = AIOKafkaConsumer(**as_user(secured_kafka, "acme"))
    await tenant.start()
    try:
        visible = await tenant.topics()  # the broker lists only what a principal may see
    finally:
        await tenant.stop()
    assert visible & set(carrying) == {topics.commands_of("acme")}  # not even their names


async def heddle_topics(kafka: ApacheKafka, prefix: str) -> list[str]:
    """Every topic of this Heddle's, as the super user sees them."""
    admin = AIOKafkaConsumer(**as_user(kafka, "admin"))
    await admin.start()
    try:
        return [topic for topic in await admin.topics() if topic.startswith(prefix)]
    finally:
        await admin.stop()
