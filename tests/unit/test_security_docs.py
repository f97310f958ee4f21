"""docs/security.md stays true: what a caller without a key or without a scope is told,
and the scopes each key allows, are what the code says."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

import pytest
from fastapi import HTTPException

from api.http.dependencies import SEND_A_KEY, require_scope
from infra.devstack.kafka import Acl, role_acls
from infra.keys import KEY, SCOPES, ApiKey
from infra.settings import Settings, Topics
from tests.unit.test_docs import blocks

SECURITY_MD = (Path(__file__).parents[2] / "docs" / "security.md").read_text()


def key(*scopes: str, name: str | None = None) -> ApiKey:
    return ApiKey("3f9a1b2c4d5e", "acme", name, scopes, datetime.now(UTC), None, None)


def test_the_401_detail_ends_with_what_the_docs_say_to_send() -> None:
    [documented] = [body for _, body, mark in blocks(SECURITY_MD) if mark == "send-a-key"]
    assert documented.strip() == SEND_A_KEY


def test_a_missing_scope_is_refused_with_the_documented_403() -> None:
    with pytest.raises(HTTPException) as refused:
        require_scope(key("read"), "write")
    assert refused.value.status_code == 403
    assert f"`403` `{refused.value.detail}`" in SECURITY_MD


def test_admin_allows_every_scope_and_read_and_write_only_themselves() -> None:
    assert all(key("admin").allows(scope) for scope in SCOPES)
    assert [s for s in SCOPES if key("read").allows(s)] == ["read"]
    assert [s for s in SCOPES if key("write").allows(s)] == ["write"]
    for scope in SCOPES:
        assert f"| `{scope}` |" in SECURITY_MD


def test_the_actor_is_the_keys_name_or_its_id() -> None:
    assert key("read", name="ci").actor == "ci"
    assert key("read").actor == "key 3f9a1b2c4d5e"
    assert "the key's name, or `key <id>` for a key without a name" in SECURITY_MD
    assert KEY.match("heddle_3f9a1b2c4d5e_" + "x" * 43)


def acl_commands(acls: list[Acl]) -> list[str]:
    """`kafka-acls.sh --add` commands for `acls`: one per principal and resource."""
    lines = []
    for (principal, resource, name, pattern), same in groupby(
        acls, lambda acl: (acl.principal, acl.resource, acl.name, acl.pattern)
    ):
        operations = " ".join(f"--operation {acl.operation.title()}" for acl in same)
        where = f"--{resource.lower()} {name}"
        if pattern == "PREFIXED":
            where += " --resource-pattern-type prefixed"
        lines.append(
            f"kafka-acls.sh $ADMIN --add --allow-principal {principal} {operations} {where}"
        )
    return lines


def test_the_documented_kafka_acls_are_the_ones_the_security_test_grants() -> None:
    [documented] = [body for _, body, mark in blocks(SECURITY_MD) if mark == "kafka-acls"]
    expected = [
        line
        for role, acls in role_acls(Topics()).items()
        for line in [f"# {role}", *acl_commands(acls)]
    ]
    assert documented.strip().splitlines() == expected


def test_kafka_settings_are_documented() -> None:
    for name in Settings.model_fields:
        if name.startswith("kafka_") and name not in {"kafka_bootstrap_servers", "kafka_port"}:
            assert f"`HEDDLE_{name.upper()}`" in SECURITY_MD, name
