"""The customer-success pack on real PostgreSQL and Kafka (issue 17): customers written
whole, in part and by signals, read with their context; imports that report bad rows by
line; playbooks refused at the path of each problem; each CSM's queue as the playbook
selects it, in score order and with the terms of each score; starting an item binds the
run to the customer; the read models rebuild to the same rows."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from api.cli.customers import example_customers
from infra.projector import rebuild
from tests.integration.helpers import EXAMPLES, publish, wait_for_command, wait_for_run
from tests.integration.shared import heddle  # noqa: F401 (fixture)
from tests.integration.test_projections import table_digest
from tests.integration.test_streams import heddle_cli, served

PACK = EXAMPLES / "customer-success"
CSMS = ("maya", "omar", "lena")


def in_days(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


@pytest.fixture
async def client(heddle: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with served(heddle) as api:
        yield api


async def until(
    read: Callable[[], Any], holds: Callable[[Any], bool], seconds: float = 30.0
) -> Any:
    """What `read()` answers once `holds` of it (asserting it does within `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        value = await read()
        if holds(value):
            return value
        assert time.monotonic() < deadline, f"still not so after {seconds} s: {value}"
        await asyncio.sleep(0.05)


def waiting_for(command_id: str) -> dict[str, str]:
    return {"X-Heddle-Wait-For-Command": command_id, "X-Heddle-Wait-Timeout": "30"}


async def test_a_customer_is_written_whole_in_part_and_by_signals_and_read_with_its_context(
    client: httpx.AsyncClient,
) -> None:
    profile = {
        "name": "Vandelay Industries",
        "owner": "kramer",
        "arr": 80000,
        "previous_arr": 100000,
        "renewal_date": in_days(40),
        "risk": 35,
        "usage": {"active_users": 40, "licensed_users": 50},
        "stakeholders": [{"name": "Art Vandelay", "role": "CEO", "influence": "high"}],
    }
    put = await client.put("/v1/customers/vandelay", json=profile)
    assert put.status_code == 202, put.text
    got = await client.get("/v1/customers/vandelay", headers=waiting_for(put.json()["command_id"]))
    assert got.status_code == 200, got.text
    customer = got.json()
    assert (customer["name"], customer["owner"], customer["arr"]) == ("Vandelay Industries",
                                                                      "kramer", 80000)  # fmt: skip
    assert customer["renewal_date"] == in_days(40)

    patched = await client.patch(
        "/v1/customers/vandelay", json={"risk": 65, "usage": {"active_users": 45}}
    )
    signal = await client.post(
        "/v1/customers/vandelay/signals", json={"kind": "contact", "note": "called Art"}
    )
    await wait_for_command(client, patched.json()["command_id"])
    context = (
        await client.get(
            "/v1/customers/vandelay/context", headers=waiting_for(signal.json()["command_id"])
        )
    ).json()
    assert context["intelligence"]["risk"] == 65
    assert context["usage"] == {"active_users": 45, "licensed_users": 50, "utilization": None,
                                "trend": None}  # fmt: skip
    assert context["engagement"]["last_contact"] == in_days(0)
    assert context["engagement"]["days_since_contact"] == 0
    assert context["financials"] == {"arr": 80000, "previous_arr": 100000, "arr_change": -20000,
                                     "trend": "down"}  # fmt: skip
    assert context["days_until_renewal"] == 40
    assert [s["note"] for s in context["customer"]["signals"]] == ["called Art"]
    stakeholders = (await client.get("/v1/customers/vandelay/stakeholders")).json()
    assert [(s["name"], s["influence"]) for s in stakeholders["items"]] == [("Art Vandelay",
                                                                              "high")]  # fmt: skip

    # A change that would make the profile invalid is refused at its path; a bad body, at once.
    refused = await client.patch("/v1/customers/vandelay", json={"risk": 150})
    outcome = await wait_for_command(client, refused.json()["command_id"])
    assert outcome["status"] == "rejected"
    assert "risk: Input should be less than or equal to 100" in outcome["reason"]
    bad = await client.put("/v1/customers/vandelay", json={"name": "", "arr": -1})
    assert bad.status_code == 422
    assert {p["path"] for p in bad.json()["problems"]} >= {"body.name", "body.arr"}

    # A run for the customer: in its context, and in the runs of the customer and assignee.
    await publish(client, yaml.safe_load((PACK / "renewal-prepare.yaml").read_text()))
    started = await client.post(
        "/v1/runs",
        json={
            "workflow": "renewal-prepare",
            "input": {"customer": {"name": "Vandelay Industries", "owner": "kramer"}},
            "customer_id": "vandelay",
            "assignee": "kramer",
        },
    )
    run_id = started.json()["run_id"]
    await wait_for_run(client, run_id, status={"running"})
    runs = (await client.get("/v1/runs", params={"customer_id": "vandelay",
                                                 "assignee": "kramer"})).json()  # fmt: skip
    assert [(r["run_id"], r["customer_id"], r["assignee"]) for r in runs["items"]] == [
        (run_id, "vandelay", "kramer")
    ]
    assert (await client.get("/v1/runs", params={"assignee": "elaine"})).json()["items"] == []
    context = await until(
        lambda: _json(client.get("/v1/customers/vandelay/context")),
        lambda c: bool(c["open_tasks"]),
    )
    assert [r["run_id"] for r in context["active_runs"]] == [run_id]
    assert [t["title"] for t in context["open_tasks"]] == ["Renewal plan for Vandelay Industries"]

    nobody = await client.post(
        "/v1/runs", json={"workflow": "renewal-prepare", "input": {"customer": {}},
                          "customer_id": "nobody"},
    )  # fmt: skip
    outcome = await wait_for_command(client, nobody.json()["command_id"])
    assert outcome["reason"] == "no customer 'nobody': create it first (PUT)"


async def publish_workflows(client: httpx.AsyncClient) -> None:
    for kind in ("prepare", "critical", "emergency"):
        await publish(client, yaml.safe_load((PACK / f"renewal-{kind}.yaml").read_text()))


async def _json(request: Any) -> Any:
    response = await request
    assert response.status_code == 200, response.text
    return response.json()


async def test_customers_are_listed_by_name_with_filters_and_cursor_pages(
    client: httpx.AsyncClient,
) -> None:
    sent = []
    for number in range(5):
        body = {"name": f"Page {number}", "owner": "pager", "risk": number * 20}
        sent.append(await client.put(f"/v1/customers/page-{number}", json=body))
    for answer in sent:
        await wait_for_command(client, answer.json()["command_id"])
    headers = waiting_for(sent[-1].json()["command_id"])
    first = (
        await client.get("/v1/customers", params={"owner": "pager", "limit": 2}, headers=headers)
    ).json()
    second = (
        await client.get(
            "/v1/customers", params={"owner": "pager", "limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    last = (
        await client.get(
            "/v1/customers", params={"owner": "pager", "limit": 2, "cursor": second["next_cursor"]}
        )
    ).json()
    names = [c["name"] for page in (first, second, last) for c in page["items"]]
    assert names == [f"Page {n}" for n in range(5)]
    assert last["next_cursor"] is None
    risky = (await client.get("/v1/customers", params={"owner": "pager", "min_risk": 60})).json()
    assert [c["customer_id"] for c in risky["items"]] == ["page-3", "page-4"]


async def test_a_playbook_with_an_unknown_workflow_or_a_broken_expression_is_refused_at_its_path(
    client: httpx.AsyncClient,
) -> None:
    await publish_workflows(client)
    playbook = yaml.safe_load((PACK / "playbook.yaml").read_text())
    playbook["rules"][0]["workflow"] = "renewal-nowhere"
    playbook["rules"][1]["when"] = "customer.risk >="
    playbook["rules"][2]["priority"][1]["value"] = "customer.arr *"
    answer = await client.put("/v1/playbooks/renewals", json=playbook)
    assert answer.status_code == 422, answer.text
    problems = {p["path"]: p["message"] for p in answer.json()["problems"]}
    assert set(problems) == {"rules[0].workflow", "rules[1].when", "rules[2].priority[1].value"}
    assert problems["rules[0].workflow"].startswith("unknown workflow 'renewal-nowhere'")
    assert problems["rules[1].when"].startswith("invalid CEL")
    assert (await client.get("/v1/playbooks/renewals")).status_code == 404


async def test_each_csms_queue_lists_what_the_playbook_selects_in_score_order(
    client: httpx.AsyncClient,
    heddle: Any,
    tmp_path: Path,
) -> None:
    await publish_workflows(client)
    playbook = await client.put(
        "/v1/playbooks/renewals",
        content=(PACK / "playbook.yaml").read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    assert playbook.status_code == 200, playbook.text
    assert playbook.json()["version"] == 1

    # Import the ten customers, with two bad lines among them: reported by line, the rest in.
    lines = [json.dumps(c) for c in example_customers()]
    lines.insert(3, '{"customer_id": "broken", "name": ')
    lines.insert(7, json.dumps({"customer_id": "too-risky", "name": "Too Risky", "risk": 150}))
    source = tmp_path / "customers.jsonl"
    source.write_text("\n".join(lines) + "\n")
    code, stdout, stderr = await heddle_cli(client, "customers", "import", str(source))
    assert code == 3, stderr
    assert "imported 10 customers; 2 lines refused" in stdout
    assert "line 4: not JSON" in stderr
    assert "line 8: risk: Input should be less than or equal to 100" in stderr

    async def queue(assignee: str) -> dict[str, Any]:
        return await _json(client.get(f"/v1/queues/{assignee}"))  # type: ignore[no-any-return]

    def listed(answer: dict[str, Any]) -> list[tuple[str, str]]:
        return [(i["customer_id"], i["workflow"]) for i in answer["items"]]

    expected = {
        "maya": [("acme", "renewal-emergency"), ("globex", "renewal-critical"),
                 ("initech", "renewal-prepare")],
        "omar": [("umbrella", "renewal-emergency"), ("stark", "renewal-critical")],
        "lena": [("soylent", "renewal-emergency"), ("wayne", "renewal-prepare"),
                 ("wonka", "renewal-prepare")],
    }  # fmt: skip
    for csm in CSMS:
        answer = await until(
            lambda csm=csm: queue(csm), lambda q, csm=csm: listed(q) == expected[csm]
        )
        scores = [item["score"] for item in answer["items"]]
        assert scores == sorted(scores, reverse=True)
        for item in answer["items"]:
            assert item["score"] == pytest.approx(sum(t["points"] for t in item["terms"]))
        assert answer["stats"]["recommended"] == len(expected[csm])
    maya = await queue("maya")
    acme = maya["items"][0]
    assert {t["name"]: t["points"] for t in acme["terms"]} == {
        "renewal proximity": 100, "arr": 24, "risk": 40, "health falling": 10, "time waiting": 0,
    }  # fmt: skip
    assert (acme["stage"], acme["score"]) == ("emergency", 174)
    assert maya["stats"]["by_stage"] == {"emergency": 1, "critical": 1, "prepare": 1}

    # Initech's renewal comes closer: it moves above Globex.
    moved = await client.patch("/v1/customers/initech", json={"renewal_date": in_days(5)})
    await wait_for_command(client, moved.json()["command_id"])
    maya = await _json(
        client.get("/v1/queues/maya", headers=waiting_for(moved.json()["command_id"]))
    )
    assert listed(maya) == [("acme", "renewal-emergency"), ("initech", "renewal-prepare"),
                            ("globex", "renewal-critical")]  # fmt: skip
    assert maya["items"][1]["score"] == 120

    # Globex is snoozed for three days: it leaves the queue, and only it.
    globex = maya["items"][2]["item_id"]
    snoozed = await client.post(f"/v1/queues/maya/items/{globex}/snooze", json={"until": "3d"})
    assert snoozed.status_code == 202, snoozed.text
    outcome = await wait_for_command(client, snoozed.json()["command_id"])
    assert outcome["status"] == "accepted", outcome
    maya = await _json(
        client.get("/v1/queues/maya", headers=waiting_for(snoozed.json()["command_id"]))
    )
    assert listed(maya) == [("acme", "renewal-emergency"), ("initech", "renewal-prepare")]
    past = await client.post(f"/v1/queues/maya/items/{globex}/snooze", json={"until": "yesterday"})
    refused = await wait_for_command(client, past.json()["command_id"])
    assert "neither an ISO 8601 time nor a duration" in refused["reason"]

    # Starting the top item binds its run to the customer; the item leaves the queue, its
    # task comes in; starting it again starts nothing more.
    start = f"/v1/queues/maya/items/{acme['item_id']}/start"
    started = await client.post(start)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    run = await wait_for_run(client, run_id, status={"running"})
    assert (run["customer_id"], run["assignee"], run["priority"]) == ("acme", "maya", 174)
    assert run["input"]["customer"]["name"] == "Acme Corp"
    assert [(t["name"], t["points"]) for t in run["input"]["item"]["terms"]] == [
        (t["name"], t["points"]) for t in acme["terms"]
    ]
    maya = await until(lambda: queue("maya"), lambda q: bool(q["tasks"]))
    assert listed(maya) == [("initech", "renewal-prepare")]
    assert [(t["run_id"], t["title"]) for t in maya["tasks"]] == [
        (run_id, "Renewal call: Acme Corp")
    ]
    assert maya["stats"]["total"] == 2

    # A paused (snoozed) run's task leaves the queue until the run resumes.
    paused = await client.post(f"/v1/runs/{run_id}/pause", json={"reason": "waiting on legal"})
    await wait_for_command(client, paused.json()["command_id"])
    assert (await _json(client.get("/v1/queues/maya", headers=waiting_for(
        paused.json()["command_id"]))))["tasks"] == []  # fmt: skip
    resumed = await client.post(f"/v1/runs/{run_id}/resume", json={})
    await wait_for_command(client, resumed.json()["command_id"])
    back = await _json(client.get("/v1/queues/maya", headers=waiting_for(
        resumed.json()["command_id"])))  # fmt: skip
    assert [t["run_id"] for t in back["tasks"]] == [run_id]
    again = await client.post(start)
    assert again.status_code == 409
    context = await _json(client.get("/v1/customers/acme/context"))
    assert [r["run_id"] for r in context["active_runs"]] == [run_id]
    assert [a["name"] for a in context["artifacts"]] == ["brief-acme.md"]
    assert [t["title"] for t in context["open_tasks"]] == ["Renewal call: Acme Corp"]

    # Completing the run with an outcome takes its task off the queue, and the customer's
    # context shows it among the past runs; the playbook does not bring the item back.
    completed = await client.post(
        f"/v1/runs/{run_id}/complete", json={"outcome": "renewed", "notes": "2 years, +5%"}
    )
    assert completed.status_code == 202
    assert (await wait_for_command(client, completed.json()["command_id"]))["status"] == (
        "accepted"
    )
    run = await wait_for_run(client, run_id)
    assert run["output"] == {"outcome": "renewed", "notes": "2 years, +5%", "completed_by": "api"}
    statuses = {n: s["status"] for n, s in run["nodes"].items()}
    assert (statuses["brief"], statuses["recommend_offline"]) == ("completed", "completed")
    assert {statuses[n] for n in ("talk", "review", "decide", "proceed", "revise")} == {"skipped"}
    assert run["variables"]["source"] == "offline fallback"  # no local model answered
    evaluated = await wait_for_command(client, f"evaluate-after:{run_id}")
    assert (evaluated["status"], evaluated["result"]["customer_id"]) == ("accepted", "acme")
    maya = await until(lambda: queue("maya"), lambda q: not q["tasks"])
    assert listed(maya) == [("initech", "renewal-prepare")]
    context = await _json(client.get("/v1/customers/acme/context"))
    assert context["active_runs"] == []
    assert [(r["run_id"], r["output"]["outcome"]) for r in context["past_runs"]] == [
        (run_id, "renewed")
    ]
    assert context["open_tasks"] == []

    # Open tasks of a role the person may take come in when the queue is asked with it.
    await publish(client, yaml.safe_load((EXAMPLES / "approval.yaml").read_text()))
    refund = await client.post(
        "/v1/runs", json={"workflow": "refund-approval", "input": {"customer": "Ada", "amount": 9}}
    )
    support = await until(
        lambda: _json(client.get("/v1/queues/maya", params={"role": "support"})),
        lambda q: bool(q["tasks"]),
    )
    assert [t["run_id"] for t in support["tasks"]] == [refund.json()["run_id"]]
    assert (await queue("maya"))["tasks"] == []

    # Another tenant sees none of it.
    async with served(heddle, tenant="intruder") as intruder:
        assert (await intruder.get("/v1/queues/maya")).json()["items"] == []
        assert (await intruder.post(start)).status_code == 404
        assert (await intruder.get("/v1/customers/acme/context")).status_code == 404

    # The read models rebuild to the same rows.
    tables = ["customers", "queue_items", "queue_customers", "queue_snoozes",
              "playbook_versions", "runs"]  # fmt: skip
    before = {t: table_digest(heddle.database_url, t) for t in tables}
    for name in ("customers", "queues", "playbooks"):
        await asyncio.to_thread(rebuild, heddle.database_url, heddle.store, name)
    assert {t: table_digest(heddle.database_url, t) for t in tables} == before

    # A day later (its evaluation moved back a day), the timer role evaluates Wonka again.
    with psycopg.connect(heddle.database_url) as conn:
        conn.execute(
            "UPDATE queue_customers SET evaluated_at = evaluated_at - interval '1 day'"
            " WHERE aggregate_id = (SELECT aggregate_id FROM customers WHERE customer_id = 'wonka')"
        )
    daily = await wait_for_command(client, f"evaluate:wonka:{in_days(0)}")
    assert (daily["status"], daily["result"]["customer_id"]) == ("accepted", "wonka")


async def test_a_csv_import_nests_dotted_columns_and_reports_bad_rows_by_line(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    source = tmp_path / "book.csv"
    source.write_text(
        "customer_id,name,owner,arr,renewal_date,usage.active_users,stakeholders\n"
        'csv-1,Nakatomi,holly,125000,2027-03-01,80,"[{""name"": ""Joseph Takagi""}]"\n'
        "csv-2,,holly,10,2027-03-01,,\n"
        "csv-3,Gruber Ltd,hans,not-a-number,,,\n"
        "csv-4,Clay Co,holly,99,,,\n"
    )
    code, stdout, stderr = await heddle_cli(client, "customers", "import", str(source))
    assert code == 3, stderr
    assert "imported 2 customers; 2 lines refused" in stdout
    assert "line 3: name: Field required" in stderr
    assert "line 4: arr: Input should be a valid number" in stderr
    nakatomi = await until(
        lambda: _json(client.get("/v1/customers", params={"owner": "holly"})),
        lambda page: len(page["items"]) == 2,
    )
    first = next(c for c in nakatomi["items"] if c["customer_id"] == "csv-1")
    assert first["profile"]["usage"]["active_users"] == 80
    assert first["profile"]["stakeholders"][0]["name"] == "Joseph Takagi"
    assert first["arr"] == 125000


async def test_the_demo_loads_the_pack_and_prints_each_csms_next_item(heddle: Any) -> None:
    async with served(heddle, tenant="demo") as demo:
        code, stdout, stderr = await heddle_cli(demo, "demo", "customer-success")
        assert code == 0, stderr
        assert "imported 10 customers" in stdout
        assert "maya: 3 recommended; next: Acme Corp (renewal-emergency)" in stdout
        assert "omar: 2 recommended; next: Umbrella (renewal-emergency)" in stdout
        assert "lena: 3 recommended; next: Soylent (renewal-emergency)" in stdout
        code, stdout, stderr = await heddle_cli(demo, "queue", "maya")
        assert code == 0, stderr
        assert stdout.splitlines()[0].split()[:4] == ["174.0", "Acme", "Corp:", "renewal-emergency"]
