"""What the routes depend on: the runtime they serve, and who is calling with which scopes.

Every route but the health checks and the API's description (`/openapi.json`, `/docs`)
needs an API key, which decides the caller's tenant, actor and scopes (docs/security.md).
"""

from __future__ import annotations

from typing import TypeAlias

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from infra.keys import ApiKey, ApiKeys, KeyRefused
from infra.runtime import Heddle

Runtime: TypeAlias = Heddle
"""The running Heddle a router serves: its stores, read pool, broker and settings."""


class Caller(BaseModel):
    """Who is calling: the tenant whose data they see, and the actor recorded in events."""

    tenant: str
    actor: str


bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`heddle keys create`; `heddle up` writes one to .heddle/admin.key).",
)
SEND_A_KEY = (
    "send an API key as `Authorization: Bearer <key>` (the heddle CLI sends HEDDLE_API_KEY, "
    "or the admin.key that `heddle up` writes to its data directory; make keys with "
    "`heddle keys create`)"
)


def api_keys(request: Request) -> ApiKeys:
    """The keys the app checks callers against (set by `create_app`)."""
    keys: ApiKeys = request.app.state.keys
    return keys


async def api_key(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> ApiKey:
    """The caller's key, from `Authorization: Bearer <key>`; 401 saying what to send."""
    if credentials is None:
        raise unauthorized(f"missing API key: {SEND_A_KEY}")
    try:
        key = await api_keys(request).verify(credentials.credentials)
    except KeyRefused as error:
        raise unauthorized(f"{error}: {SEND_A_KEY}") from None
    request.state.key_id = key.id  # for the request log
    return key


def unauthorized(detail: str) -> HTTPException:
    """A 401 that tells the client to send a bearer key."""
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def caller(key: ApiKey = Depends(api_key)) -> Caller:
    """The tenant and actor of the caller's key (its name, or `key <id>`)."""
    return Caller(tenant=key.tenant, actor=key.actor)


def require_scope(key: ApiKey, scope: str) -> None:
    """403 unless the key has `scope`, naming the scopes it has."""
    if not key.allows(scope):
        raise HTTPException(
            403, f"this API key lacks the {scope!r} scope (it has: {', '.join(key.scopes)})"
        )


async def read_or_write_scope(request: Request, key: ApiKey = Depends(api_key)) -> None:
    """GET needs the `read` scope, anything else `write`."""
    require_scope(key, "read" if request.method in ("GET", "HEAD") else "write")


async def admin_scope(key: ApiKey = Depends(api_key)) -> None:
    """Keys and credentials need the `admin` scope."""
    require_scope(key, "admin")


DEPLOYMENT_TENANT = "default"
"""The tenant whose admin keys run the deployment: they also see what belongs to no
tenant (dead letters naming none) and to every tenant at once (`/metrics`)."""


async def operator_scope(key: ApiKey = Depends(api_key)) -> None:
    """What spans tenants needs an admin key of the deployment's own tenant."""
    require_scope(key, "admin")
    if key.tenant != DEPLOYMENT_TENANT:
        raise HTTPException(
            403, f"this needs an admin key of the {DEPLOYMENT_TENANT!r} tenant (it spans tenants)"
        )
