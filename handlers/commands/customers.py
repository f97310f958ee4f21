"""Commands that change a `Customer` or the tenant's `Playbooks`. Every change of a
customer is evaluated against the latest playbooks in the same unit of work, so what
the queues read is recorded with the change that caused it."""

from __future__ import annotations

from typing import Any

from domain.customers import (
    Customer,
    EvaluateCustomer,
    RecordCustomerSignal,
    SnoozeQueueItem,
    UpdateCustomer,
    UpsertCustomer,
    customer_id,
    facts,
)
from domain.definitions import WorkflowDefinition, definition_id
from domain.errors import CommandRejected
from domain.messages import CommandEnvelope
from domain.playbooks import Playbooks, PublishPlaybook, parse_playbook, playbooks_id, recommend
from handlers.commands.context import Context
from handlers.unit_of_work import UnitOfWork


def customer_of(uow: UnitOfWork, tenant: str, external_id: str) -> Customer:
    """The tenant's customer; `CommandRejected` when there is none."""
    customer = uow.get(customer_id(tenant, external_id), Customer)
    if customer is None or customer.tenant != tenant:
        raise CommandRejected(f"no customer {external_id!r}: create it first (PUT)")
    return customer


def evaluated(uow: UnitOfWork, customer: Customer, ctx: Context) -> dict[str, Any]:
    """Record what the tenant's playbooks recommend for `customer` now; the result part
    of a receipt (how many items)."""
    book = uow.get(playbooks_id(customer.tenant), Playbooks)
    latest = book.latest() if book is not None else {}
    items = recommend(
        customer.tenant,
        facts(customer.external_id, customer.profile, ctx.now.date()),
        {name: version["spec"] for name, version in latest.items()},
        customer.recommended_since,
        ctx.now,
    )
    versions = {name: int(version["version"]) for name, version in latest.items()}
    customer.recommend(items, versions, ctx.now.isoformat())
    return {"customer_id": customer.external_id, "recommended": len(items)}


def upsert_customer(
    command: UpsertCustomer, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Create the customer or replace its profile, then evaluate the playbooks."""
    customer = uow.get(customer_id(envelope.tenant, command.customer_id), Customer)
    created = customer is None
    if customer is None:
        customer = Customer(tenant=envelope.tenant, external_id=command.customer_id)
        uow.add(customer)
    changed = customer.set_profile(command.profile, envelope.actor)
    return {**evaluated(uow, customer, ctx), "created": created, "changed": changed}


def update_customer(
    command: UpdateCustomer, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    customer = customer_of(uow, envelope.tenant, command.customer_id)
    changed = customer.update_profile(command.changes, envelope.actor)
    return {**evaluated(uow, customer, ctx), "changed": changed}


def record_customer_signal(
    command: RecordCustomerSignal, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    customer = customer_of(uow, envelope.tenant, command.customer_id)
    customer.record_signal(command.kind, command.data, command.note, envelope.actor, now=ctx.now)
    return {**evaluated(uow, customer, ctx), "signal": command.kind}


def evaluate_customer(
    command: EvaluateCustomer, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    return evaluated(uow, customer_of(uow, envelope.tenant, command.customer_id), ctx)


def published_workflows(uow: UnitOfWork, tenant: str, document: Any) -> set[str]:
    """The workflows a playbook document names that the tenant has published."""
    rules = document.get("rules") if isinstance(document, dict) else None
    named = {r["workflow"] for r in rules or [] if isinstance(r, dict)
             and isinstance(r.get("workflow"), str)}  # fmt: skip
    return {
        name
        for name in named
        if (found := uow.get(definition_id(tenant, name), WorkflowDefinition)) and found.versions
    }


def snooze_queue_item(
    command: SnoozeQueueItem, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    customer = customer_of(uow, envelope.tenant, command.customer_id)
    until = customer.snooze(str(command.item_id), command.until, envelope.actor, now=ctx.now)
    return {"customer_id": customer.external_id, "item_id": str(command.item_id), "until": until}


def publish_playbook(
    command: PublishPlaybook, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Validate a playbook (its workflows must be published) and publish it as a version.
    Customers are evaluated again by `EvaluateCustomer` (the API sends one per customer)."""
    document = command.playbook
    spec = parse_playbook(document, published_workflows(uow, envelope.tenant, document))
    book = uow.get(playbooks_id(envelope.tenant), Playbooks)
    if book is None:
        book = Playbooks(tenant=envelope.tenant)
        uow.add(book)
    number = book.publish(spec, envelope.actor)
    return {"playbook": spec.name, "version": number}
