"""Credential routes: store, list and delete provider keys. No answer ever holds a key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from api.http.database import Timestamp
from api.http.dependencies import Caller, Runtime, caller
from api.http.pagination import Page, after, page
from api.http.problems import errors
from domain.definitions import CREDENTIAL_ID
from infra.credentials import CredentialStoreError
from infra.llm.router import KNOWN_PROVIDERS

PROVIDERS = "^(" + "|".join(p for p in KNOWN_PROVIDERS if p != "scripted") + ")$"
CredentialId = Path(pattern=CREDENTIAL_ID, description="what nodes name in `credential:`")


class CredentialIn(BaseModel):
    """A provider key to store: which provider, and the key (never answered back)."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(pattern=PROVIDERS, description="the provider the key is for")
    api_key: SecretStr = Field(min_length=1, max_length=4096)


class CredentialAbout(BaseModel):
    """What Heddle shows of a credential (never its key)."""

    id: str
    provider: str
    created_at: Timestamp
    updated_at: Timestamp


def _described(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "provider": row["provider"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def routes(runtime: Runtime) -> APIRouter:
    """Store, list and delete the provider keys of the caller's tenant."""
    router = APIRouter(prefix="/v1/credentials", tags=["credentials"])
    store = runtime.credentials

    @router.put("/{credential_id}", response_model=CredentialAbout)
    async def put_credential(
        body: CredentialIn, credential_id: str = CredentialId, who: Caller = Depends(caller)
    ) -> dict[str, Any]:
        """Store (or replace) a provider key under an id; it is encrypted at rest."""
        try:
            row = await store.put(
                who.tenant, credential_id, body.provider, body.api_key.get_secret_value()
            )
        except CredentialStoreError as error:
            raise HTTPException(503, str(error)) from None
        return _described(row)

    @router.get("", response_model=Page[CredentialAbout], responses=errors(400))
    async def list_credentials(
        who: Caller = Depends(caller),
        limit: int = Query(default=100, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The tenant's credentials by id: ids, providers and times, never keys, with
        cursor pagination."""
        [start] = after(cursor, ["id"]) or [None]
        found = await store.list(who.tenant, start, limit + 1)
        return page([_described(row) for row in found], limit, ["id"])

    @router.delete("/{credential_id}", status_code=204, responses=errors(404))
    async def delete_credential(
        credential_id: str = CredentialId, who: Caller = Depends(caller)
    ) -> None:
        """Delete a provider key; nodes naming it fail from then on."""
        if not await store.delete(who.tenant, credential_id):
            raise HTTPException(404, f"no credential {credential_id!r}")

    return router
