"""Customers whose run ended: `EvaluateCustomer` (`evaluate-after:<run>`), so that what
the playbooks recommend for them takes the ended run into account. The command id is
derived from the run, so a redelivered event sends the same command and the intake
decides it once."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.customers import customer_id
from domain.messages import RUN_FINISHED, CommandEnvelope
from domain.runs import WorkflowRun
from handlers.unit_of_work import UnitOfWork


def customer_commands(
    events: list[dict[str, Any]], uow: UnitOfWork
) -> list[tuple[CommandEnvelope, str]]:
    """The `EvaluateCustomer` commands (and their keys) that ended runs call for."""
    commands = []
    for event in events:
        if event["type"] not in RUN_FINISHED:
            continue
        run = uow.get(UUID(event["aggregate_id"]), WorkflowRun, event["aggregate_version"])
        external = (run.binding or {}).get("customer_id") if run is not None else None
        if run is None or external is None:
            continue
        envelope = CommandEnvelope(
            command_id=f"evaluate-after:{run.id}",
            type="EvaluateCustomer",
            tenant=run.tenant,
            actor="heddle",
            payload={"customer_id": external},
        )
        commands.append((envelope, str(customer_id(run.tenant, external))))
    return commands
