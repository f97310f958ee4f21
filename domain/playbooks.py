"""Playbooks: which workflow each customer needs, at which stage, and how urgently.

A playbook is a versioned document of rules. A rule selects customers with a CEL
condition over `customer` (`domain.customers.facts`: the profile and what follows from
it, such as `renewal_in_days`), names the workflow they need and its stage, and scores
the recommendation with weighted CEL terms (`score = sum of weight * value`), so a person
sees why one item comes before another. `item.waiting_days` is how long the
recommendation has waited. Every problem of a document is reported at its path, like a
workflow definition's; all of a tenant's playbooks live in one `Playbooks` aggregate.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.definitions import HEDDLE_NAMESPACE, NAME_PATTERN
from domain.errors import DefinitionInvalid, ExpressionError, Problem, problems_of
from domain.expressions import compile_expression, evaluate, evaluate_condition

RULE_ID = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"


class Term(BaseModel):
    """One part of a rule's score: `weight` times what `value` (CEL, a number) gives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    weight: float = 1.0
    value: str = Field(min_length=1, max_length=4096)


class Rule(BaseModel):
    """Customers for whom `when` holds need `workflow`, at `stage`, scored by `priority`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=RULE_ID)
    workflow: str = Field(pattern=NAME_PATTERN)
    stage: str = Field(min_length=1, max_length=64)
    when: str = Field(default="true", min_length=1, max_length=4096)
    priority: list[Term] = Field(default_factory=list, max_length=20)
    description: str = Field(default="", max_length=2000)


class PlaybookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=5000)
    stages: list[str] = Field(default_factory=list, max_length=50)
    rules: list[Rule] = Field(min_length=1, max_length=200)


def parse_playbook(document: Any, workflows: set[str] | None = None) -> PlaybookSpec:
    """A valid playbook, or `DefinitionInvalid` listing every problem at its path: the
    document's shape, each expression, repeated rule ids, stages not listed, and (given
    the tenant's published `workflows`) workflows that are not published."""
    try:
        spec = PlaybookSpec.model_validate(document)
    except ValidationError as error:
        raise DefinitionInvalid(
            [Problem(".".join(str(p) for p in e["loc"]), e["msg"]) for e in error.errors()]
        ) from None
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, rule in enumerate(spec.rules):
        at = f"rules[{index}]"
        if rule.id in seen:
            problems.append(Problem(f"{at}.id", f"rule {rule.id!r} is defined twice"))
        seen.add(rule.id)
        if workflows is not None and rule.workflow not in workflows:
            known = ", ".join(sorted(workflows)) or "none"
            message = f"unknown workflow {rule.workflow!r} (published: {known})"
            problems.append(Problem(f"{at}.workflow", message))
        if spec.stages and rule.stage not in spec.stages:
            problems.append(
                Problem(f"{at}.stage", f"unknown stage {rule.stage!r} (stages: {spec.stages})")
            )
        problems += problems_of(compile_expression, rule.when, f"{at}.when")
        for number, term in enumerate(rule.priority):
            path = f"{at}.priority[{number}].value"
            problems += problems_of(compile_expression, term.value, path)
    if problems:
        raise DefinitionInvalid(problems)
    return spec


def content_hash(spec: PlaybookSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def item_id(tenant: str, customer: str, playbook: str, rule: str) -> str:
    """The id of a recommendation in a queue: the same for as long as the rule selects the
    customer, so that starting it twice starts one run."""
    return str(uuid5(HEDDLE_NAMESPACE, f"queue-item/{tenant}/{customer}/{playbook}/{rule}"))


def recommend(
    tenant: str,
    customer: dict[str, Any],
    playbooks: dict[str, dict[str, Any]],
    since: dict[str, str],
    now: datetime,
) -> list[dict[str, Any]]:
    """What the `playbooks` (name → latest version's spec) recommend for `customer` (its
    facts) at `now`, highest score first: one item per rule that selects it, with the
    terms of its score. `since`: when each item was first recommended (for waiting time).
    A rule whose condition fails on this customer (a value it lacks) selects nothing."""
    items = []
    for name, document in sorted(playbooks.items()):
        spec = PlaybookSpec.model_validate(document)
        for rule in spec.rules:
            key = item_id(tenant, customer["id"], name, rule.id)
            waited = now - datetime.fromisoformat(since.get(key, now.isoformat()))
            activation = {
                "customer": customer,
                "item": {"waiting_days": waited.days, "workflow": rule.workflow,
                         "stage": rule.stage},
                "today": now.date().isoformat(),
            }  # fmt: skip
            try:
                if not evaluate_condition(rule.when, activation):
                    continue
            except ExpressionError:
                continue
            terms = [term_of(term, activation) for term in rule.priority]
            items.append(
                {
                    "item_id": key,
                    "playbook": name,
                    "rule": rule.id,
                    "workflow": rule.workflow,
                    "stage": rule.stage,
                    "score": round(sum(t["points"] for t in terms), 3),
                    "terms": terms,
                }
            )
    return sorted(items, key=lambda i: (-i["score"], i["playbook"], i["rule"]))


def term_of(term: Term, activation: dict[str, Any]) -> dict[str, Any]:
    """A term as scored: its value, weight and points (0, with the error, when its
    expression fails or gives no number)."""
    found: dict[str, Any] = {"name": term.name, "weight": term.weight}
    try:
        value = evaluate(term.value, activation)
    except ExpressionError as error:
        return {**found, "value": None, "points": 0.0, "error": str(error)}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return {**found, "value": None, "points": 0.0, "error": f"gave {value!r}, not a number"}
    return {**found, "value": value, "points": round(term.weight * value, 3)}


def playbooks_id(tenant: str) -> UUID:
    return uuid5(HEDDLE_NAMESPACE, f"playbooks/{tenant}")


class Playbooks(Aggregate):
    """A tenant's playbooks, each with its immutable published versions."""

    @staticmethod
    def create_id(tenant: str) -> UUID:
        return playbooks_id(tenant)

    @event("Created")
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.versions: dict[str, list[dict[str, Any]]] = {}

    def publish(self, spec: PlaybookSpec, actor: str) -> int:
        """Publish `spec` as its playbook's next version (the latest, if unchanged)."""
        digest = content_hash(spec)
        versions = self.versions.get(spec.name, [])
        if versions and versions[-1]["content_hash"] == digest:
            return int(versions[-1]["version"])
        self._version_published(
            self.tenant, spec.name, len(versions) + 1, digest, spec.model_dump(mode="json"), actor
        )
        return len(versions) + 1

    @event("VersionPublished")
    def _version_published(
        self,
        tenant: str,
        name: str,
        number: int,
        content_hash: str,
        spec: dict[str, Any],
        actor: str,
    ) -> None:
        version = {"version": number, "content_hash": content_hash, "spec": spec, "actor": actor}
        self.versions = {**self.versions, name: [*self.versions.get(name, []), version]}

    def latest(self) -> dict[str, dict[str, Any]]:
        """Each playbook's latest version."""
        return {name: versions[-1] for name, versions in self.versions.items()}


class PublishPlaybook(BaseModel):
    """Publish a playbook as its next version; every customer is then evaluated again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    playbook: dict[str, Any]
