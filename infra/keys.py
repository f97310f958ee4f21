"""API keys: who may call the HTTP API, for which tenant, with which scopes.

A key reads `heddle_<id>_<secret>`: the id finds the row, the secret proves possession.
Only a SHA-256 digest of the whole key is stored, so the key itself is shown once, when
it is made, and never again. A fast hash is the right one here: the secret is 32 random
bytes (256 bits), so no one can guess it, and salts or slow hashes (which protect
guessable passwords) would add nothing but a cost on every request. Digests are
compared in constant time.

Scopes: `read` (GET), `write` (POST, PUT, DELETE), `admin` (keys and credentials, and
everything else: an admin can make itself a key of any scope anyway). Roles: the task
roles (`human` nodes' `role`) whose tasks the key may complete or reassign.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

SCOPES = ("read", "write", "admin")
PREFIX = "heddle_"
KEY = re.compile(r"^heddle_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
COLUMNS = "id, tenant, name, scopes, roles, created_at, expires_at, revoked_at"
ROLE = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class KeyRefused(Exception):
    """The key cannot be used: the message says why (safe to show the caller)."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key's description (never its secret)."""

    id: str
    tenant: str
    name: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    roles: tuple[str, ...] = ()
    """The task roles (a `human` node's `role`) whose tasks the key may act on."""

    @property
    def actor(self) -> str:
        """Who the events say acted: the key's name, or `key <id>` for an unnamed key."""
        return self.name or f"key {self.id}"

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def described(self) -> dict[str, Any]:
        """What the API and CLI show of a key."""
        times = {
            field: None if value is None else value.isoformat()
            for field, value in (
                ("created_at", self.created_at),
                ("expires_at", self.expires_at),
                ("revoked_at", self.revoked_at),
            )
        }
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "scopes": list(self.scopes),
            "roles": list(self.roles),
            **times,
            "status": self.status(datetime.now(UTC)),
        }


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(**{**row, "scopes": tuple(row["scopes"]), "roles": tuple(row["roles"])})


class ApiKeys:
    """The keys of every tenant, in PostgreSQL."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def create(
        self,
        tenant: str,
        scopes: list[str],
        name: str | None = None,
        expires_at: datetime | None = None,
        roles: Sequence[str] = (),
    ) -> tuple[ApiKey, str]:
        """A new key and the key itself (show it once: it is not stored). A naive
        `expires_at` is taken as UTC; `roles` are the task roles it acts in."""
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {scopes}")
        if bad := [role for role in roles if not re.match(ROLE, role)]:
            raise ValueError(f"roles are letters, digits, '_', '.', ':', '-'; got {bad}")
        key_id = secrets.token_hex(6)
        secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        ordered = [scope for scope in SCOPES if scope in scopes]
        rows = await self._fetch(
            f"INSERT INTO api_keys (id, tenant, name, scopes, digest, expires_at, roles)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {COLUMNS}",
            [key_id, tenant, name, ordered, _digest(secret), expires_at, sorted(set(roles))],
        )
        return _key(rows[0]), secret

    async def list(
        self,
        tenant: str | None,
        after: builtins.list[Any] | None = None,
        limit: int | None = None,
    ) -> builtins.list[ApiKey]:
        """A tenant's keys (every tenant's with None), oldest first, revoked ones too:
        every one, or up to `limit` after the `(created_at, id)` of `after`."""
        where, params = (["tenant = %s"], [tenant]) if tenant is not None else ([], [])
        if after is not None:
            where.append("(created_at, id) > (%s, %s)")
            params += after
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(
            f"SELECT {COLUMNS} FROM api_keys {clause} ORDER BY created_at, id LIMIT %s",
            [*params, limit],
        )
        return [_key(row) for row in rows]

    async def revoke(self, tenant: str | None, key_id: str) -> ApiKey | None:
        """Revoke a key of `tenant` (of any tenant with None); None when there is none.
        Revoking twice keeps the first time."""
        rows = await self._fetch(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
            f" WHERE id = %s AND (%s::text IS NULL OR tenant = %s) RETURNING {COLUMNS}",
            [key_id, tenant, tenant],
        )
        return _key(rows[0]) if rows else None

    async def verify(self, secret: str) -> ApiKey:
        """The active key `secret` is, or `KeyRefused` saying why not."""
        match = KEY.match(secret)
        rows = (
            []
            if match is None
            else await self._fetch(
                f"SELECT {COLUMNS}, digest FROM api_keys WHERE id = %s", [match.group(1)]
            )
        )
        if not rows or not hmac.compare_digest(bytes(rows[0].pop("digest")), _digest(secret)):
            raise KeyRefused("invalid API key")
        key = _key(rows[0])
        status = key.status(datetime.now(UTC))
        if status == "revoked":
            raise KeyRefused(f"API key {key.id} was revoked")
        if status == "expired":
            raise KeyRefused(f"API key {key.id} expired at {key.expires_at}")
        return key

    async def _fetch(self, query: str, params: builtins.list[Any]) -> builtins.list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall() if cur.description else []
