"""Customers over HTTP: write them (`UpsertCustomer`, `UpdateCustomer`,
`RecordCustomerSignal`, a batch for imports) and read them from the `customers` read
model: a list with filters and cursor pages, one customer, its stakeholders, and its
context (what a person opening the customer needs: profile, financials, usage,
engagement, days until renewal, its runs, open tasks, latest artifacts, and what the
playbooks recommend).

Writes answer 202 with the command id, like every command the API sends; a body that
is no valid profile is 422 with the path of each problem, before anything is sent.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.http.consistency import consistent_reads
from api.http.database import json_object, jsonable, read
from api.http.dependencies import Caller, Runtime, caller
from api.http.pagination import after, page
from api.http.send import send_command
from domain.customers import (
    CUSTOMER_ID,
    CustomerProfile,
    Signal,
    Stakeholder,
    customer_id,
    facts,
    profile_problems,
)
from projections import customers, queues

CustomerId = Annotated[
    str, Path(pattern=CUSTOMER_ID, description="the tenant's id of the customer (a CRM id)")
]
MAX_IMPORT = 1000
"""Customers one import request may carry (the CLI sends a file in batches of this)."""


class CustomerAccepted(BaseModel):
    """The answer to a customer command sent: its id and the customer's."""

    command_id: str
    status: str = "pending"
    customer_id: str


class SignalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Signal
    data: dict[str, Any] = Field(default_factory=dict)
    note: str = Field(default="", max_length=5000)


class ImportIn(BaseModel):
    """Customers to create or replace: each a profile with its `customer_id`."""

    model_config = ConfigDict(extra="forbid")

    customers: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_IMPORT)


class ImportProblem(BaseModel):
    index: int = Field(description="the customer's place in the request, from 0")
    path: str
    message: str


class ImportOut(BaseModel):
    """What became of each customer of an import: sent (with its command) or refused."""

    accepted: list[CustomerAccepted]
    problems: list[ImportProblem]


class Customer(BaseModel):
    """A customer as lists show it: its profile and the columns lists filter on."""

    customer_id: str
    name: str
    domain: str | None = None
    owner: str | None = None
    segment: str | None = None
    arr: float | None = None
    renewal_date: date | None = None
    health: float | None = None
    risk: float | None = None
    opportunity: float | None = None
    profile: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int
    position: int


class CustomerPage(BaseModel):
    items: list[Customer]
    next_cursor: str | None


class CustomerDetail(Customer):
    signals: list[dict[str, Any]] = Field(description="the latest signals, newest first")


class Stakeholders(BaseModel):
    customer_id: str
    items: list[Stakeholder]


class Financials(BaseModel):
    arr: float | None
    previous_arr: float | None
    arr_change: float | None
    trend: Literal["up", "flat", "down"] | None


class Intelligence(BaseModel):
    health: float | None
    health_trend: str | None
    risk: float | None
    opportunity: float | None


class CustomerContext(BaseModel):
    """Everything a person needs on opening a customer, in one answer."""

    customer: CustomerDetail
    intelligence: Intelligence
    financials: Financials
    usage: dict[str, Any]
    engagement: dict[str, Any]
    contract: dict[str, Any]
    days_until_renewal: int | None
    recommended: list[dict[str, Any]] = Field(description="what the playbooks recommend now")
    active_runs: list[dict[str, Any]]
    past_runs: list[dict[str, Any]]
    open_tasks: list[dict[str, Any]]
    artifacts: list[dict[str, Any]] = Field(description="the latest artifacts of its runs")


ACTIVE = {"pending", "running", "paused", "waiting"}


def routes(runtime: Runtime) -> APIRouter:
    """The customer routes: writes, the list, one customer and its context."""
    router = APIRouter(tags=["customers"], dependencies=[Depends(consistent_reads(runtime))])
    add_writes(router, runtime)
    add_reads(router, runtime)
    return router


def add_writes(router: APIRouter, runtime: Runtime) -> None:
    """PUT, PATCH, signals and imports: each a command sent (202)."""

    async def send(
        who: Caller, type_: str, external_id: str, payload: dict[str, Any]
    ) -> CustomerAccepted:
        key = str(customer_id(who.tenant, external_id))
        command_id = await send_command(
            runtime, who, type_, {**payload, "customer_id": external_id}, key
        )
        return CustomerAccepted(command_id=command_id, customer_id=external_id)

    @router.put(
        "/v1/customers/{customer_id}",
        status_code=202,
        response_model=CustomerAccepted,
        operation_id="put_customer",
    )
    async def put_customer(
        body: CustomerProfile,
        customer_id: CustomerId,
        who: Caller = Depends(caller),
    ) -> CustomerAccepted:
        """Create the customer or replace its whole profile (`UpsertCustomer`)."""
        profile = body.model_dump(mode="json", exclude_unset=True)
        return await send(who, "UpsertCustomer", customer_id, {"profile": profile})

    @router.patch(
        "/v1/customers/{customer_id}",
        status_code=202,
        response_model=CustomerAccepted,
        operation_id="patch_customer",
    )
    async def patch_customer(
        changes: dict[str, Any],
        customer_id: CustomerId,
        who: Caller = Depends(caller),
    ) -> CustomerAccepted:
        """Change part of the profile (`UpdateCustomer`, a JSON merge patch: objects merge,
        `null` removes a value); the result must still be a valid profile."""
        if not changes:
            raise HTTPException(422, "send at least one field to change")
        return await send(who, "UpdateCustomer", customer_id, {"changes": changes})

    @router.post(
        "/v1/customers/{customer_id}/signals",
        status_code=202,
        response_model=CustomerAccepted,
        operation_id="record_customer_signal",
    )
    async def record_signal(
        customer_id: CustomerId, body: SignalIn, who: Caller = Depends(caller)
    ) -> CustomerAccepted:
        """Record a signal (`RecordCustomerSignal`): a contact, a QBR, a support ticket
        opened or closed, usage figures, new scores, or a note."""
        return await send(who, "RecordCustomerSignal", customer_id, body.model_dump())

    @router.post("/v1/customers/import", response_model=ImportOut, operation_id="import_customers")
    async def import_customers(body: ImportIn, who: Caller = Depends(caller)) -> ImportOut:
        """Create or replace many customers (`UpsertCustomer` each): every valid one is sent,
        every invalid one is listed with its place and the path of each problem."""
        accepted, problems = [], []
        for index, document in enumerate(body.customers):
            found = document_problems(document)
            if found:
                problems += [ImportProblem(index=index, path=p, message=m) for p, m in found]
                continue
            profile = {k: v for k, v in document.items() if k != "customer_id"}
            accepted.append(
                await send(who, "UpsertCustomer", document["customer_id"], {"profile": profile})
            )
        return ImportOut(accepted=accepted, problems=problems)


def add_reads(router: APIRouter, runtime: Runtime) -> None:
    """The list, one customer, its stakeholders and its context."""

    async def customer_row(external_id: str, who: Caller) -> dict[str, Any]:
        found = await read(runtime, customers.get_customer, who.tenant, external_id)
        if found is None:
            raise HTTPException(
                404, f"no customer {external_id!r} (it may still be saving: retry shortly)"
            )
        return found

    @router.get("/v1/customers", response_model=CustomerPage, operation_id="list_customers")
    async def list_customers(
        who: Caller = Depends(caller),
        owner: str | None = Query(default=None, description="the customers of one CSM"),
        segment: str | None = None,
        renewal_before: date | None = Query(default=None, description="renewing by this day"),
        min_risk: float | None = Query(default=None, ge=0, le=100),
        max_health: float | None = Query(default=None, ge=0, le=100),
        limit: int = Query(default=50, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Customers by name, with filters and cursor pagination (`next_cursor`)."""
        keys = ["name", "customer_id"]
        ranges = {"renewal_before": renewal_before, "min_risk": min_risk, "max_health": max_health}
        rows = await read(
            runtime, customers.list_customers, who.tenant, {"owner": owner, "segment": segment},
            ranges, after(cursor, keys), limit + 1,
        )  # fmt: skip
        return page(rows, limit, keys)

    @router.get(
        "/v1/customers/{customer_id}", response_model=CustomerDetail, operation_id="get_customer"
    )
    async def get_customer(
        customer_id: CustomerId, who: Caller = Depends(caller)
    ) -> dict[str, Any]:
        """A customer: its profile and latest signals."""
        return json_object(await customer_row(customer_id, who))

    @router.get(
        "/v1/customers/{customer_id}/stakeholders",
        response_model=Stakeholders,
        operation_id="list_customer_stakeholders",
    )
    async def stakeholders(
        customer_id: CustomerId, who: Caller = Depends(caller)
    ) -> dict[str, Any]:
        """The customer's stakeholders: name, role, influence, sentiment, notes."""
        row = await customer_row(customer_id, who)
        return {"customer_id": customer_id, "items": row["profile"].get("stakeholders", [])}

    @router.get(
        "/v1/customers/{customer_id}/context",
        response_model=CustomerContext,
        operation_id="get_customer_context",
    )
    async def context(customer_id: CustomerId, who: Caller = Depends(caller)) -> dict[str, Any]:
        """The customer with its financials, usage, engagement, days until renewal, what the
        playbooks recommend, its active and past runs, open tasks and latest artifacts."""
        row = await customer_row(customer_id, who)
        profile = row["profile"]
        known = facts(customer_id, profile, datetime.now(UTC).date())
        runs = jsonable(await read(runtime, customers.customer_runs, who.tenant, customer_id))
        return {
            "customer": jsonable(row),
            "intelligence": {
                k: profile.get(k) for k in ("health", "health_trend", "risk", "opportunity")
            },
            "financials": {
                "arr": profile.get("arr"),
                "previous_arr": profile.get("previous_arr"),
                "arr_change": known.get("arr_change"),
                "trend": known.get("arr_trend"),
            },
            "usage": profile.get("usage", {}),
            "engagement": {**profile.get("engagement", {}),
                           **({"days_since_contact": known["days_since_contact"]}
                              if "days_since_contact" in known else {})},
            "contract": profile.get("contract", {}),
            "days_until_renewal": known.get("renewal_in_days"),
            "recommended": jsonable(
                await read(runtime, queues.customer_items, who.tenant, customer_id)
            ),
            "active_runs": [r for r in runs if r["status"] in ACTIVE],
            "past_runs": [r for r in runs if r["status"] not in ACTIVE],
            "open_tasks": jsonable(
                await read(runtime, customers.customer_tasks, who.tenant, customer_id)
            ),
            "artifacts": jsonable(
                await read(runtime, customers.customer_artifacts, who.tenant, customer_id)
            ),
        }  # fmt: skip


def document_problems(document: dict[str, Any]) -> list[tuple[str, str]]:
    """Every problem of one customer of an import: its id and its profile."""
    problems: list[tuple[str, str]] = []
    external = document.get("customer_id")
    if not isinstance(external, str) or not re.match(CUSTOMER_ID, external):
        problems.append(("customer_id", "required: letters, digits, _.:- (at most 128)"))
    profile = {k: v for k, v in document.items() if k != "customer_id"}
    return problems + profile_problems(profile)
