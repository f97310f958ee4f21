"""Provider routes: a health check of every configured provider, by one minimal real call."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.http.dependencies import Runtime


class ProviderCheck(BaseModel):
    """One provider's answer to a minimal call."""

    provider: str
    model: str
    ok: bool
    latency_ms: float | None = None
    error: str | None = None


class ProvidersHealth(BaseModel):
    """Every configured provider, checked (a report, also with its 503)."""

    ok: bool
    providers: list[ProviderCheck]


def routes(runtime: Runtime) -> APIRouter:
    """`GET /v1/providers/health` (admin scope: real calls cost money)."""
    router = APIRouter(prefix="/v1/providers", tags=["providers"])

    @router.get(
        "/health", response_model=ProvidersHealth,
        responses={503: {"model": ProvidersHealth, "description": "a provider failed"}},
    )  # fmt: skip
    async def check_providers() -> JSONResponse:
        """`{ok, providers: [{provider, model, ok, latency_ms, error?}]}`; 503 when any fails."""
        reports = await runtime.llm.check_all()
        ok = all(report["ok"] for report in reports)
        return JSONResponse({"ok": ok, "providers": reports}, status_code=200 if ok else 503)

    return router
