"""Provider routes: a health check of every configured provider, by one minimal real call."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.http.dependencies import Runtime


def routes(runtime: Runtime) -> APIRouter:
    """`GET /v1/providers/health` (admin scope: real calls cost money)."""
    router = APIRouter(prefix="/v1/providers", tags=["providers"])

    @router.get("/health")
    async def providers_health() -> JSONResponse:
        """`{ok, providers: [{provider, model, ok, latency_ms, error?}]}`; 503 when any fails."""
        reports = await runtime.llm.check_all()
        ok = all(report["ok"] for report in reports)
        return JSONResponse({"ok": ok, "providers": reports}, status_code=200 if ok else 503)

    return router
