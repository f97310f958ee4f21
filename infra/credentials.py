"""The credential store: provider API keys in PostgreSQL, encrypted with AES-GCM.

A node names a credential by id (`credential: team-a`); the key is looked up only when a
call is made, decrypted in memory, and never written anywhere else. The encryption key
comes from `HEDDLE_CREDENTIALS_KEY` (base64 of 32 random bytes). Each ciphertext is bound
to its tenant, id and provider (AES-GCM associated data), so a row copied to another id
does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

KEY_VARIABLE = "HEDDLE_CREDENTIALS_KEY"
GENERATE = "python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"


class CredentialStoreError(Exception):
    """The store cannot encrypt or decrypt: the message says what to set."""


class Cipher:
    """AES-GCM under the key from the environment, with a fresh 96-bit nonce per value."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Cipher:
        """The cipher under `HEDDLE_CREDENTIALS_KEY` of `environ`."""
        return cls.from_key(environ.get(KEY_VARIABLE))

    @classmethod
    def from_key(cls, encoded: str | None) -> Cipher:
        """The cipher under a key (base64 of 32 bytes); the error says how to make one."""
        if not encoded:
            raise CredentialStoreError(
                f"{KEY_VARIABLE} is not set: stored credentials need an encryption key; "
                f"generate one with {GENERATE} and set it for the API and the workers"
            )
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise CredentialStoreError(
                f"{KEY_VARIABLE} must be base64 of exactly 32 bytes; generate one with {GENERATE}"
            )
        return cls(key)

    def encrypt(self, plaintext: str, context: str) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return self._aead.encrypt(nonce, plaintext.encode(), context.encode()), nonce

    def decrypt(self, ciphertext: bytes, nonce: bytes, context: str) -> str:
        try:
            return self._aead.decrypt(nonce, ciphertext, context.encode()).decode()
        except InvalidTag:
            raise CredentialStoreError(
                f"a stored credential does not decrypt with this {KEY_VARIABLE}: it was "
                "stored under another key; store it again"
            ) from None


def _context(tenant: str, credential_id: str, provider: str) -> str:
    return f"heddle-credential/{tenant}/{credential_id}/{provider}"


class CredentialStore:
    """Stored credentials of every tenant. Reads answer ids, providers and times only;
    `key` is the one method that returns a secret, for the provider router."""

    def __init__(self, pool: AsyncConnectionPool[Any], key: SecretStr | None) -> None:
        self.pool = pool
        self._key = key
        self._cipher: Cipher | None = None

    def cipher(self) -> Cipher:
        if self._cipher is None:
            self._cipher = Cipher.from_key(self._key.get_secret_value() if self._key else None)
        return self._cipher

    async def put(
        self, tenant: str, credential_id: str, provider: str, api_key: str
    ) -> dict[str, Any]:
        """Store (or replace) a credential; answers its description, never the key."""
        context = _context(tenant, credential_id, provider)
        ciphertext, nonce = self.cipher().encrypt(api_key, context)
        rows = await self._fetch(
            "INSERT INTO credentials (tenant, id, provider, ciphertext, nonce)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, id) DO UPDATE SET"
            " provider = EXCLUDED.provider, ciphertext = EXCLUDED.ciphertext,"
            " nonce = EXCLUDED.nonce, updated_at = now()"
            " RETURNING id, provider, created_at, updated_at",
            [tenant, credential_id, provider, ciphertext, nonce],
        )
        return rows[0]

    async def list(
        self, tenant: str, after: str | None = None, limit: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The tenant's credentials by id: every one, or up to `limit` after the id `after`."""
        return await self._fetch(
            "SELECT id, provider, created_at, updated_at FROM credentials"
            " WHERE tenant = %s AND (%s::text IS NULL OR id > %s) ORDER BY id LIMIT %s",
            [tenant, after, after, limit],
        )

    async def delete(self, tenant: str, credential_id: str) -> bool:
        rows = await self._fetch(
            "DELETE FROM credentials WHERE tenant = %s AND id = %s RETURNING id",
            [tenant, credential_id],
        )
        return bool(rows)

    async def key(self, tenant: str, credential_id: str) -> tuple[str, str] | None:
        """(provider, key) of a stored credential, or None when there is none."""
        rows = await self._fetch(
            "SELECT provider, ciphertext, nonce FROM credentials WHERE tenant = %s AND id = %s",
            [tenant, credential_id],
        )
        if not rows:
            return None
        row = rows[0]
        context = _context(tenant, credential_id, row["provider"])
        return row["provider"], self.cipher().decrypt(row["ciphertext"], row["nonce"], context)

    async def _fetch(self, query: str, params: builtins.list[Any]) -> builtins.list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall() if cur.description else []
