"""The caller's tenant's AI mode (admin scope): how its free threads are answered."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.http.dependencies import Caller, Runtime, caller
from api.http.send import Accepted, send_command
from domain.tenants import NO_AI, settings_id
from handlers.unit_of_work import UnitOfWork


class TenantAiIn(BaseModel):
    """The payload of `ConfigureTenant`."""

    model_config = ConfigDict(extra="forbid")

    ai_mode: Literal["simple", "orchestrator"] = "simple"
    model: str | None = None
    system: str | None = None
    tools: list[str] = Field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    max_steps: int = 8
    credential: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class TenantAi(TenantAiIn):
    """The tenant's AI mode (`model: null`: no AI replies)."""

    model_config = ConfigDict(extra="allow")

    tenant: str


def routes(runtime: Runtime) -> APIRouter:
    """`GET /v1/tenant/ai` and `PUT /v1/tenant/ai`."""
    router = APIRouter(tags=["tenant"])

    @router.get("/v1/tenant/ai", response_model=TenantAi, response_model_exclude_unset=True)
    async def get_tenant_ai(who: Caller = Depends(caller)) -> dict[str, Any]:
        """The tenant's AI mode and its configuration (`model: null`: no AI replies)."""
        settings = await runtime.writer.run(UnitOfWork(runtime.store).get, settings_id(who.tenant))
        ai = settings.ai if settings is not None else NO_AI
        return {"tenant": who.tenant, **ai}

    @router.put("/v1/tenant/ai", status_code=202, response_model=Accepted)
    async def configure_tenant_ai(body: TenantAiIn, who: Caller = Depends(caller)) -> Accepted:
        """Set the tenant's AI mode (`ConfigureTenant`); threads opened later use it."""
        payload = body.model_dump(exclude_none=True)
        command_id = await send_command(
            runtime, who, "ConfigureTenant", payload, f"tenant/{who.tenant}"
        )
        return Accepted(command_id=command_id)

    return router
