"""Customers: who a tenant's staff work for, as the playbooks and the queues see them.

A customer is named by the tenant's own id (a CRM id, a slug). Its profile (owner, ARR,
renewal, health, usage, engagement, stakeholders) is set whole (`UpsertCustomer`, PUT),
changed in part (`UpdateCustomer`, PATCH) or by a signal from outside (a contact, a
support ticket, a usage figure: `RecordCustomerSignal`). Every change is re-evaluated
against the tenant's playbooks (`domain.playbooks`) and the recommendations recorded, so
the queues read facts rather than computing them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.definitions import HEDDLE_NAMESPACE
from domain.errors import CommandRejected
from domain.runs.timers import moment

CUSTOMER_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
MAX_SIGNALS = 50
"""The signals a customer keeps (the newest); older ones stay in its events."""


class Stakeholder(BaseModel):
    """A person at the customer: who they are, how much they weigh, how they feel."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    influence: Literal["low", "medium", "high"] | None = None
    sentiment: Literal["negative", "neutral", "positive"] | None = None
    notes: str = Field(default="", max_length=5000)


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active_users: int | None = Field(default=None, ge=0)
    licensed_users: int | None = Field(default=None, ge=0)
    utilization: float | None = Field(default=None, ge=0, le=100, description="percent")
    trend: Literal["up", "flat", "down"] | None = None


class Engagement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    last_contact: date | None = None
    qbr_date: date | None = None
    support_tickets: int | None = Field(default=None, ge=0, description="open tickets")


class CustomerProfile(BaseModel):
    """Everything known of a customer but its id: what `PUT /v1/customers/{id}` takes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=253)
    owner: str | None = Field(default=None, max_length=200, description="the CSM")
    segment: str | None = Field(default=None, max_length=100)
    arr: float | None = Field(default=None, ge=0, description="current annual revenue")
    previous_arr: float | None = Field(default=None, ge=0)
    renewal_date: date | None = None
    contract: dict[str, Any] = Field(default_factory=dict, description="contract terms")
    health: float | None = Field(default=None, ge=0, le=100)
    health_trend: Literal["up", "flat", "down"] | None = None
    risk: float | None = Field(default=None, ge=0, le=100)
    opportunity: float | None = Field(default=None, ge=0, le=100)
    usage: Usage = Field(default_factory=Usage)
    engagement: Engagement = Field(default_factory=Engagement)
    stakeholders: list[Stakeholder] = Field(default_factory=list, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=50)


SIGNAL_KINDS = ("contact", "qbr", "support_ticket", "ticket_closed", "usage", "scores", "note")
Signal = Literal["contact", "qbr", "support_ticket", "ticket_closed", "usage", "scores", "note"]


def customer_id(tenant: str, external_id: str) -> UUID:
    """The aggregate id of a tenant's customer."""
    return uuid5(HEDDLE_NAMESPACE, f"customer/{tenant}/{external_id}")


def profile_problems(document: Any) -> list[tuple[str, str]]:
    """Every problem of a profile document: (path, message); none when it is valid."""
    try:
        CustomerProfile.model_validate(document)
    except ValidationError as error:
        return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in error.errors()]
    return []


def valid_profile(document: Any) -> dict[str, Any]:
    """The profile as stored (JSON values, defaults filled in); `CommandRejected` lists
    every problem at its path."""
    try:
        return CustomerProfile.model_validate(document).model_dump(mode="json")
    except ValidationError as error:
        found = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(profile)'}: {e['msg']}"
            for e in error.errors()
        )
        raise CommandRejected(f"invalid customer: {found}") from None


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` applied to `base` as a JSON merge patch (RFC 7396): objects merge, `null`
    removes a key, anything else replaces."""
    result = dict(base)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def facts(external_id: str, profile: dict[str, Any], today: date) -> dict[str, Any]:
    """The customer as playbook expressions and workflow inputs see it: the profile, its id,
    and what follows from it on `today` (days until renewal, since the last contact, the
    ARR's trend). Unknown values are left out, so that `has(customer.risk)` tells."""
    known = {k: v for k, v in profile.items() if v is not None}
    known["usage"] = {k: v for k, v in profile.get("usage", {}).items() if v is not None}
    known["engagement"] = {k: v for k, v in profile.get("engagement", {}).items() if v is not None}
    derived: dict[str, Any] = {"id": external_id}
    if profile.get("renewal_date"):
        derived["renewal_in_days"] = (date.fromisoformat(profile["renewal_date"]) - today).days
    last_contact = known["engagement"].get("last_contact")
    if last_contact:
        derived["days_since_contact"] = (today - date.fromisoformat(last_contact)).days
    arr, previous = profile.get("arr"), profile.get("previous_arr")
    if arr is not None and previous is not None:
        derived["arr_change"] = arr - previous
        derived["arr_trend"] = "up" if arr > previous else "down" if arr < previous else "flat"
    return {**known, **derived}


def apply_signal(
    profile: dict[str, Any], kind: str, data: dict[str, Any], at: datetime
) -> dict[str, Any]:
    """The profile after a signal: a contact or a QBR dates the engagement, a ticket counts,
    a usage figure or scores replace theirs; a note changes nothing but the history."""
    engagement = dict(profile.get("engagement") or {})
    if kind == "contact":
        engagement["last_contact"] = at.date().isoformat()
    elif kind == "qbr":
        engagement["qbr_date"] = data.get("date", at.date().isoformat())
    elif kind in ("support_ticket", "ticket_closed"):
        count = engagement.get("support_tickets") or 0
        engagement["support_tickets"] = max(0, count + (1 if kind == "support_ticket" else -1))
    elif kind == "usage":
        return {**profile, "usage": {**(profile.get("usage") or {}), **data}}
    elif kind == "scores":
        named = ("health", "health_trend", "risk", "opportunity")
        scores = {k: data[k] for k in named if k in data}
        return {**profile, **scores}
    return {**profile, "engagement": engagement}


class Customer(Aggregate):
    """A tenant's customer: its profile, its latest signals and the workflows the tenant's
    playbooks recommend for it."""

    @staticmethod
    def create_id(tenant: str, external_id: str) -> UUID:
        return customer_id(tenant, external_id)

    @event("Created")
    def __init__(self, tenant: str, external_id: str) -> None:
        self.tenant = tenant
        self.external_id = external_id
        self.profile: dict[str, Any] = {}
        self.signals: list[dict[str, Any]] = []
        self.recommendations: list[dict[str, Any]] = []
        self.recommended_since: dict[str, str] = {}
        self.assignee: str | None = None
        self.snoozed: dict[str, str] = {}
        self.evaluated_at = ""

    def set_profile(self, profile: dict[str, Any], actor: str) -> bool:
        """Replace the profile (validated); False when nothing changed."""
        profile = valid_profile(profile)
        if profile == self.profile:
            return False
        self._profile_set(profile, actor)
        return True

    def update_profile(self, changes: dict[str, Any], actor: str) -> bool:
        """Change part of the profile (a JSON merge patch); the result must be valid."""
        if not self.profile:
            raise CommandRejected(
                f"no customer {self.external_id!r} yet: create it whole first (PUT)"
            )
        return self.set_profile(merged(self.profile, changes), actor)

    @event("ProfileSet")
    def _profile_set(self, profile: dict[str, Any], actor: str) -> None:
        self.profile = profile

    def record_signal(
        self, kind: str, data: dict[str, Any], note: str, actor: str, *, now: datetime
    ) -> None:
        """Record a signal from outside and what it changes in the profile."""
        if not self.profile:
            raise CommandRejected(f"no customer {self.external_id!r}: create it first (PUT)")
        profile = valid_profile(apply_signal(self.profile, kind, data, now))
        signal = {"kind": kind, "data": data, "note": note, "at": now.isoformat(), "by": actor}
        self._signal_recorded(signal, profile)

    @event("SignalRecorded")
    def _signal_recorded(self, signal: dict[str, Any], profile: dict[str, Any]) -> None:
        self.signals = [*self.signals, signal][-MAX_SIGNALS:]
        self.profile = profile

    def recommend(self, items: list[dict[str, Any]], playbooks: dict[str, int], at: str) -> bool:
        """Record what the playbooks recommend now (`domain.playbooks.recommend`); False
        when it is what they recommended already today (a day's first evaluation is
        always recorded: the daily one is due until it is)."""
        owner = self.profile.get("owner")
        same_day = self.evaluated_at[:10] == at[:10]
        if items == self.recommendations and owner == self.assignee and same_day:
            return False
        self._recommended(items, playbooks, owner, at)
        return True

    def snooze(self, item_id: str, until: str, actor: str, *, now: datetime) -> str:
        """Take a recommendation off its queue until `until` (ISO 8601 or a duration such
        as `3d`); it comes back then, if the playbooks still recommend it."""
        if item_id not in {item["item_id"] for item in self.recommendations}:
            raise CommandRejected(
                f"no item {item_id} is recommended for customer {self.external_id!r}"
            )
        at = moment(until, "until", now)
        if at <= now:
            raise CommandRejected(f"until: {until!r} is not in the future")
        self._item_snoozed(item_id, at.isoformat(), actor)
        return at.isoformat()

    @event("ItemSnoozed")
    def _item_snoozed(self, item_id: str, until: str, actor: str) -> None:
        self.snoozed = {**self.snoozed, item_id: until}

    @event("Recommended")
    def _recommended(
        self, items: list[dict[str, Any]], playbooks: dict[str, int], assignee: str | None, at: str
    ) -> None:
        self.recommendations = items
        self.assignee = assignee
        self.evaluated_at = at
        since = {item["item_id"]: self.recommended_since.get(item["item_id"], at) for item in items}
        self.recommended_since = since


class UpsertCustomer(BaseModel):
    """Create a customer or replace its whole profile (`PUT /v1/customers/{id}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(pattern=CUSTOMER_ID)
    profile: dict[str, Any]


class UpdateCustomer(BaseModel):
    """Change part of a customer's profile, as a JSON merge patch (`PATCH`): objects
    merge, `null` removes a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(pattern=CUSTOMER_ID)
    changes: dict[str, Any] = Field(min_length=1)


class RecordCustomerSignal(BaseModel):
    """Something happened at a customer: a contact, a QBR, a support ticket opened or
    closed, a usage figure, new scores (`data`: health, health_trend, risk, opportunity),
    or a note."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(pattern=CUSTOMER_ID)
    kind: Signal
    data: dict[str, Any] = Field(default_factory=dict)
    note: str = Field(default="", max_length=5000)


class EvaluateCustomer(BaseModel):
    """Evaluate the playbooks for a customer again (after a playbook is published, a run
    of theirs ends, or as the days pass)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(pattern=CUSTOMER_ID)


class SnoozeQueueItem(BaseModel):
    """Take a customer's recommendation off its queue until a time (`2026-12-10T09:00Z`)
    or for a while (`3d`); it comes back then if the playbooks still recommend it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(pattern=CUSTOMER_ID)
    item_id: UUID
    until: str = Field(min_length=1, max_length=64, description="ISO 8601 time or duration")
