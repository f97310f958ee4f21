"""Finding the published version a new run pins, shared by `StartRun` and subworkflows."""

from __future__ import annotations

from typing import Any

from domain.definitions import definition_id, input_problems
from domain.errors import InputInvalid, WorkflowNotFound
from handlers.unit_of_work import UnitOfWork


def published_version(
    uow: UnitOfWork, tenant: str, workflow: str, number: int | None, input: dict[str, Any]
) -> dict[str, Any]:
    """The pinned (or latest) version of a tenant's published workflow, checked against
    `input`; `WorkflowNotFound` or `InputInvalid` say what to fix."""
    definition = uow.get(definition_id(tenant, workflow))
    if definition is None or not definition.versions:
        raise WorkflowNotFound(
            f"no workflow named {workflow!r} is published for tenant {tenant!r}: "
            f"publish it first (PUT /v1/workflows/{workflow})"
        )
    version: dict[str, Any] | None = definition.get_version(number)
    if version is None:
        raise WorkflowNotFound(
            f"workflow {workflow!r} has no version {number} (latest is {len(definition.versions)})"
        )
    problems = input_problems(version["spec"].get("inputs", {}), input)
    if problems:
        raise InputInvalid("input does not match the workflow's inputs: " + "; ".join(problems))
    return version
