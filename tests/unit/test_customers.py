"""Customers and playbooks, pure: profiles written whole, in part and by signals; what a
playbook recommends, in score order with its terms; every problem of a playbook at its
path."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from domain.customers import Customer, facts, merged
from domain.errors import CommandRejected, DefinitionInvalid
from domain.playbooks import Playbooks, parse_playbook, recommend

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
RULES: dict[str, Any] = {
    "name": "renewals",
    "rules": [
        {
            "id": "critical",
            "workflow": "renewal-critical",
            "stage": "critical",
            "when": "customer.renewal_in_days <= 90 && customer.risk >= 50",
            "priority": [
                {"name": "renewal proximity", "value": "120 - customer.renewal_in_days"},
                {"name": "arr", "weight": 0.0001, "value": "customer.arr"},
                {"name": "waiting", "weight": 2, "value": "item.waiting_days"},
            ],
        },
        {"id": "prepare", "workflow": "renewal-prepare", "stage": "prepare",
         "when": "customer.renewal_in_days <= 120"},
    ],
}  # fmt: skip


def customer(**profile: Any) -> Customer:
    acme = Customer(tenant="t", external_id="acme")
    acme.set_profile({"name": "Acme", "owner": "maya", **profile}, "crm")
    return acme


def test_a_partial_update_merges_objects_and_removes_what_is_null() -> None:
    acme = customer(arr=100, usage={"active_users": 5, "trend": "up"}, risk=20)
    acme.update_profile({"usage": {"active_users": 7}, "risk": None}, "maya")
    assert acme.profile["usage"] == {"active_users": 7, "licensed_users": None,
                                     "utilization": None, "trend": "up"}  # fmt: skip
    assert acme.profile["risk"] is None
    assert merged({"a": {"b": 1, "c": 2}}, {"a": {"c": None}, "d": 3}) == {"a": {"b": 1}, "d": 3}


def test_an_update_that_breaks_the_profile_is_refused_at_its_path() -> None:
    acme = customer()
    with pytest.raises(CommandRejected, match=r"risk: Input should be less than or equal to 100"):
        acme.update_profile({"risk": 101}, "maya")
    assert acme.profile["risk"] is None


def test_signals_date_the_engagement_and_count_tickets() -> None:
    acme = customer()
    acme.record_signal("contact", {}, "call", "maya", now=NOW)
    acme.record_signal("support_ticket", {}, "", "zendesk", now=NOW)
    acme.record_signal("support_ticket", {}, "", "zendesk", now=NOW)
    acme.record_signal("ticket_closed", {}, "", "zendesk", now=NOW)
    acme.record_signal("scores", {"risk": 70, "ignored": 1}, "", "model", now=NOW)
    assert acme.profile["engagement"]["last_contact"] == "2026-12-04"
    assert acme.profile["engagement"]["support_tickets"] == 1
    assert acme.profile["risk"] == 70
    assert [s["kind"] for s in acme.signals][-1] == "scores"


def test_facts_say_what_follows_from_the_profile_on_a_day() -> None:
    acme = customer(arr=90, previous_arr=100, renewal_date="2027-01-03",
                    engagement={"last_contact": "2026-11-24"})  # fmt: skip
    known = facts("acme", acme.profile, date(2026, 12, 4))
    assert (known["renewal_in_days"], known["days_since_contact"]) == (30, 10)
    assert (known["arr_change"], known["arr_trend"]) == (-10, "down")
    assert "risk" not in known  # unknown values are absent: has(customer.risk) is false


def test_a_playbook_recommends_by_score_with_the_terms_that_make_it() -> None:
    spec = parse_playbook(RULES, {"renewal-critical", "renewal-prepare"}).model_dump(mode="json")
    acme = customer(arr=200_000, renewal_date="2027-01-03", risk=60)
    items = recommend("t", facts("acme", acme.profile, NOW.date()), {"renewals": spec}, {}, NOW)
    assert [(i["rule"], i["score"]) for i in items] == [("critical", 110.0), ("prepare", 0.0)]
    assert [(t["name"], t["value"], t["points"]) for t in items[0]["terms"]] == [
        ("renewal proximity", 90, 90.0), ("arr", 200_000.0, 20.0), ("waiting", 0, 0.0),
    ]  # fmt: skip
    later = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    since = {items[0]["item_id"]: NOW.isoformat()}
    again = recommend("t", facts("acme", acme.profile, later.date()), {"renewals": spec}, since,
                      later)  # fmt: skip
    assert again[0]["score"] == 110.0 + 3 + 6  # three days closer, three days waiting (x2)


def test_a_customer_a_condition_cannot_read_is_not_selected() -> None:
    spec = parse_playbook(RULES).model_dump(mode="json")
    tyrell = customer(risk=90)  # no renewal date
    assert recommend("t", facts("tyrell", tyrell.profile, NOW.date()), {"r": spec}, {}, NOW) == []


def test_every_problem_of_a_playbook_is_reported_at_its_path() -> None:
    broken = {
        "name": "renewals",
        "stages": ["prepare"],
        "rules": [
            {"id": "a", "workflow": "nowhere", "stage": "prepare", "when": "customer.risk >"},
            {"id": "a", "workflow": "renewal-prepare", "stage": "later",
             "priority": [{"name": "x", "value": "1 +"}]},
        ],
    }  # fmt: skip
    with pytest.raises(DefinitionInvalid) as caught:
        parse_playbook(broken, {"renewal-prepare"})
    assert {p.path for p in caught.value.problems} == {
        "rules[0].workflow", "rules[0].when", "rules[1].id", "rules[1].stage",
        "rules[1].priority[0].value",
    }  # fmt: skip


def test_publishing_the_same_playbook_again_makes_no_new_version() -> None:
    book = Playbooks(tenant="t")
    spec = parse_playbook(RULES)
    assert book.publish(spec, "ops") == 1
    assert book.publish(spec, "ops") == 1
    changed = parse_playbook({**RULES, "description": "v2"})
    assert book.publish(changed, "ops") == 2
    assert book.latest()["renewals"]["version"] == 2
