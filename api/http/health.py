"""Health checks, open to anyone (load balancers carry no keys)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.http.database import ping
from api.http.dependencies import Runtime


class Health(BaseModel):
    """The process answers."""

    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    """Whether PostgreSQL and Kafka answer too (a report, also with its 503)."""

    ready: bool
    checks: dict[str, str] = Field(
        description="`ok`, or why not, by dependency", examples=[{"postgres": "ok", "kafka": "ok"}]
    )


def routes(runtime: Runtime) -> APIRouter:
    """`/healthz` (the process answers) and `/readyz` (PostgreSQL and Kafka answer too)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz", response_model=Readiness,
        responses={503: {"model": Readiness, "description": "PostgreSQL or Kafka does not answer"}},
    )  # fmt: skip
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await ping(runtime)
            checks["postgres"] = "ok"
        except Exception as error:
            checks["postgres"] = f"unavailable: {type(error).__name__}"
        try:
            answered = await runtime.broker.ping(timeout=2.0)
            checks["kafka"] = "ok" if answered else "unavailable: no answer within 2 s"
        except Exception as error:
            checks["kafka"] = f"unavailable: {type(error).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return router
