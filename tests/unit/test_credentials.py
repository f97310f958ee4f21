"""Stored credentials: AES-GCM encryption bound to the row, and how the router resolves a
node's credential (environment first, then the store of the run's tenant)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys

import pytest

from domain.llm import LlmError, LlmRequest, Message
from infra.credentials import Cipher, CredentialStoreError
from infra.llm.router import ProviderRouter, ProviderSettings
from tests.fakes.llm_servers import (
    AnthropicWire,
    FakeLlmServer,
    OpenAiWire,
    sent_key,
)

ENCRYPTION_KEY = base64.b64encode(os.urandom(32)).decode()


class Stored:
    """An in-memory credential source: what the PostgreSQL store answers."""

    def __init__(self, rows: dict[tuple[str, str], tuple[str, str]]) -> None:
        self.rows = rows

    async def key(self, tenant: str, credential_id: str) -> tuple[str, str] | None:
        return self.rows.get((tenant, credential_id))


def ask(credential: str | None, model: str = "openai:gpt-4o-mini") -> LlmRequest:
    return LlmRequest(
        model=model, messages=[Message(role="user", content="hi")], credential=credential
    )


def router(server: FakeLlmServer, stored: Stored, **environ: str) -> ProviderRouter:
    settings = ProviderSettings.from_env(
        {
            "OPENAI_API_KEY": "sk-environment",
            "OPENAI_BASE_URL": f"{server.url}/v1",
            "ANTHROPIC_BASE_URL": server.url,
            **environ,
        }
    )
    return ProviderRouter(settings, credentials=stored)


def test_a_value_decrypts_only_with_its_own_tenant_id_and_provider() -> None:
    cipher = Cipher.from_env({"HEDDLE_CREDENTIALS_KEY": ENCRYPTION_KEY})
    ciphertext, nonce = cipher.encrypt("sk-secret", "acme/team-a/openai")
    assert b"sk-secret" not in ciphertext
    assert cipher.decrypt(ciphertext, nonce, "acme/team-a/openai") == "sk-secret"
    with pytest.raises(CredentialStoreError, match="store it again"):
        cipher.decrypt(ciphertext, nonce, "other/team-a/openai")


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({}, "HEDDLE_CREDENTIALS_KEY is not set: stored credentials need an encryption key"),
        ({"HEDDLE_CREDENTIALS_KEY": "c2hvcnQ="}, "must be base64 of exactly 32 bytes"),
    ],
)
def test_the_store_without_a_usable_encryption_key_says_what_to_set(
    environ: dict[str, str], reason: str
) -> None:
    with pytest.raises(CredentialStoreError, match=reason):
        Cipher.from_env(environ)


async def test_a_node_credential_is_the_stored_key_of_the_runs_tenant(
    server: FakeLlmServer,
) -> None:
    server.then(OpenAiWire.completion("a"), OpenAiWire.completion("b"))
    providers = router(
        server,
        Stored(
            {("acme", "team"): ("openai", "sk-acme"), ("other", "team"): ("openai", "sk-other")}
        ),
    )
    await providers.for_tenant("acme").complete(ask("team"))
    await providers.for_tenant("other").complete(ask("team"))
    await providers.aclose()
    assert [sent_key(r) for r in server.requests] == ["sk-acme", "sk-other"]


async def test_the_environment_variable_of_a_credential_comes_before_the_store(
    server: FakeLlmServer,
) -> None:
    server.then(OpenAiWire.completion("a"))
    providers = router(
        server,
        Stored({("acme", "team"): ("openai", "sk-stored")}),
        HEDDLE_CREDENTIAL_TEAM="sk-from-env",
    )
    await providers.for_tenant("acme").complete(ask("team"))
    await providers.aclose()
    assert sent_key(server.requests[0]) == "sk-from-env"


async def test_a_credential_stored_for_another_provider_fails_without_a_call(
    server: FakeLlmServer,
) -> None:
    providers = router(server, Stored({("acme", "claude"): ("anthropic", "sk-ant")}))
    with pytest.raises(LlmError) as caught:
        await providers.for_tenant("acme").complete(ask("claude"))
    await providers.aclose()
    assert caught.value.kind == "fatal"
    assert str(caught.value) == (
        "openai: the node's credential 'claude' is for anthropic, not openai: store a openai "
        "key under another id, or change the node's model"
    )
    assert server.calls == 0


async def test_a_stored_key_echoed_by_the_provider_is_redacted(server: FakeLlmServer) -> None:
    server.then(AnthropicWire.error(400, "bad key sk-ant-stored-secret for this model"))
    providers = router(server, Stored({("acme", "claude"): ("anthropic", "sk-ant-stored-secret")}))
    with pytest.raises(LlmError) as caught:
        await providers.for_tenant("acme").complete(ask("claude", "anthropic:claude-haiku-4-5"))
    await providers.aclose()
    assert str(caught.value) == (
        "anthropic rejected the request (400): bad key [redacted] for this model"
    )


async def test_providers_check_exits_1_and_names_the_reason_when_a_provider_fails(
    server: FakeLlmServer,
) -> None:
    server.then(OpenAiWire.error(401, "Incorrect API key provided"))
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_BASE_URL")) and not k.startswith("HEDDLE_")
    }
    environ.update(OPENAI_API_KEY="sk-wrong", OPENAI_BASE_URL=f"{server.url}/v1")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "providers",
        "check",
        "--json",
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 1
    reports = {r["provider"]: r for r in json.loads(stdout)}
    assert set(reports) == {"openai", "scripted"}
    assert reports["openai"]["error"] == (
        "openai rejected the API key (401): set OPENAI_API_KEY or the node's credential"
    )
    assert reports["scripted"]["ok"] is True
