"""Commands that change a `WorkflowDefinition`, and the published version a new run pins."""

from __future__ import annotations

from typing import Any

from domain.commands import PublishWorkflow
from domain.definitions import WorkflowDefinition, definition_id, input_problems, parse_definition
from domain.errors import InputInvalid, WorkflowNotFound
from domain.messages import CommandEnvelope
from handlers.commands.context import Context
from handlers.unit_of_work import UnitOfWork


def publish_workflow(
    command: PublishWorkflow, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Validate a definition and publish it as a new version (or the same, if unchanged);
    its HTTP tools may call only the deployment's allowed hosts."""
    spec = parse_definition(command.definition, ctx.allowed_hosts)
    aggregate_id = definition_id(envelope.tenant, spec.name)
    definition = uow.get(aggregate_id, WorkflowDefinition)
    if definition is None:
        definition = WorkflowDefinition(tenant=envelope.tenant, name=spec.name)
        uow.add(definition)
    number = definition.publish(spec, envelope.actor)
    version = definition.get_version(number)
    assert version is not None  # published just now
    return {"workflow": spec.name, "version": number, "content_hash": version["content_hash"]}


def published_definition(uow: UnitOfWork, tenant: str, workflow: str) -> WorkflowDefinition:
    """A tenant's published workflow; `WorkflowNotFound` says to publish it first."""
    definition = uow.get(definition_id(tenant, workflow), WorkflowDefinition)
    if definition is None or not definition.versions:
        raise WorkflowNotFound(
            f"no workflow named {workflow!r} is published for tenant {tenant!r}: "
            f"publish it first (PUT /v1/workflows/{workflow})"
        )
    return definition


def published_version(
    uow: UnitOfWork, tenant: str, workflow: str, number: int | None, input: dict[str, Any]
) -> dict[str, Any]:
    """The pinned (or latest) version of a tenant's published workflow, checked against
    `input`; `WorkflowNotFound` or `InputInvalid` say what to fix."""
    definition = published_definition(uow, tenant, workflow)
    version: dict[str, Any] | None = definition.get_version(number)
    if version is None:
        raise WorkflowNotFound(
            f"workflow {workflow!r} has no version {number} (latest is {len(definition.versions)})"
        )
    problems = input_problems(version["spec"].get("inputs", {}), input)
    if problems:
        raise InputInvalid("input does not match the workflow's inputs: " + "; ".join(problems))
    return version
