"""Key routes (admin scope): make, list and revoke the API keys of the caller's tenant.

A new key is in the answer to its creation and nowhere else, ever; lists show ids,
names, scopes and times. Keys of another tenant are made with `heddle keys create
--database` by whoever runs the database (docs/security.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from api.http.database import Timestamp
from api.http.dependencies import Caller, Runtime, caller
from api.http.pagination import Page, after, page
from api.http.problems import errors
from domain.commands import TENANT_PATTERN
from infra.keys import ApiKeys


class KeyIn(BaseModel):
    """A key to make: its scopes, name and expiry (of the caller's tenant only)."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[Literal["read", "write", "admin"]] = Field(min_length=1)
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="recorded as the actor of what the key does",
    )
    roles: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="task roles (a `human` node's `role`) whose tasks the key may act on",
    )
    expires_at: datetime | None = Field(default=None, description="when the key stops working")
    tenant: str | None = Field(
        default=None,
        pattern=TENANT_PATTERN,
        description="the caller's tenant (the only one allowed)",
    )


class KeyAbout(BaseModel):
    """What Heddle shows of a key (never the key)."""

    id: str
    tenant: str
    name: str | None
    scopes: list[str]
    roles: list[str]
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    status: str = Field(description="active | revoked | expired")


class NewKey(KeyAbout):
    """A key made: `key` is shown here once and never again."""

    key: str


def routes(runtime: Runtime) -> APIRouter:
    """Make, list and revoke the keys of the caller's tenant."""
    router = APIRouter(prefix="/v1/keys", tags=["keys"])
    keys = ApiKeys(runtime.reads)

    @router.post("", status_code=201, response_model=NewKey, responses=errors(422))
    async def create_key(body: KeyIn, who: Caller = Depends(caller)) -> dict[str, Any]:
        """A new key of the caller's tenant; `key` is shown here once and never again."""
        if body.tenant not in (None, who.tenant):
            raise HTTPException(403, tenant_refused(who.tenant, body.tenant))
        scopes = list[str](body.scopes)
        try:
            key, secret = await keys.create(
                who.tenant, scopes, body.name, body.expires_at, body.roles
            )
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        return {**key.described(), "key": secret}

    @router.get("", response_model=Page[KeyAbout], responses=errors(400))
    async def list_keys(
        who: Caller = Depends(caller),
        limit: int = Query(default=100, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The tenant's keys, oldest first, revoked and expired ones too (never the keys
        themselves), with cursor pagination."""
        order = ["created_at", "id"]
        found = await keys.list(who.tenant, after(cursor, order), limit + 1)
        return page([key.described() for key in found], limit, order)

    @router.delete("/{key_id}", response_model=KeyAbout, responses=errors(404))
    async def revoke_key(key_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        """Revoke a key: it is refused from the next request on, and listed as revoked."""
        key = await keys.revoke(who.tenant, key_id)
        if key is None:
            raise HTTPException(404, f"no key {key_id!r}")
        return key.described()

    return router


def tenant_refused(own: str, other: str) -> str:
    """Why an admin key may not make a key of another tenant, and how to make one."""
    return (
        f"an admin key of tenant {own!r} manages that tenant's keys only; make keys for "
        f"{other!r} with `heddle keys create --database --tenant {other}` (docs/security.md)"
    )
