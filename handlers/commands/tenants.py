"""Commands that change a tenant's settings (`TenantSettings`)."""

from __future__ import annotations

from typing import Any

from domain.commands import ConfigureTenant
from domain.messages import CommandEnvelope
from domain.tenants import TenantSettings, settings_id
from handlers.commands.context import Context
from handlers.unit_of_work import UnitOfWork


def configure_tenant(
    command: ConfigureTenant, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Set the tenant's AI mode; threads opened from now on answer that way."""
    settings = uow.get(settings_id(envelope.tenant), TenantSettings)
    if settings is None:
        settings = TenantSettings(tenant=envelope.tenant)
        uow.add(settings)
    settings.configure(command.model_dump(mode="json"), envelope.actor)
    return {"tenant": envelope.tenant, "ai_mode": command.ai_mode, "model": command.model}
