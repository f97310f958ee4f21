"""Command intake against the in-memory store: every command ends in one receipt."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from domain.commands import run_id_for
from handlers.commands.intake import handle_command
from handlers.records import Record

HELLO = yaml.safe_load((Path(__file__).parents[2] / "examples" / "hello.yaml").read_text())


def record(value: object, offset: int = 0) -> Record:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return Record("heddle.commands", 0, offset, None, raw)


def publish_hello(uow) -> None:
    handle_command(
        record({"command_id": "p1", "type": "PublishWorkflow", "payload": {"definition": HELLO}}),
        uow,
    )


def test_start_run_creates_the_run_and_an_accepted_receipt(uow) -> None:
    publish_hello(uow)
    receipt = handle_command(
        record(
            {
                "command_id": "c1",
                "type": "StartRun",
                "payload": {"workflow": "hello", "input": {"name": "Ada"}},
            }
        ),
        uow,
    )
    assert receipt is not None
    assert receipt.outcome == "accepted"
    run = uow.get(run_id_for("default", "c1"))
    assert run.workflow == "hello"
    assert run.nodes["greet"]["status"] == "running"


def test_the_same_command_id_twice_is_decided_once(uow) -> None:
    publish_hello(uow)
    command = {
        "command_id": "c1",
        "type": "StartRun",
        "payload": {"workflow": "hello", "input": {"name": "Ada"}},
    }
    assert handle_command(record(command), uow) is not None
    uow.save()
    assert handle_command(record(command, offset=7), uow) is None
    assert uow.changed() == []


def test_rejections_say_what_to_fix(uow) -> None:
    publish_hello(uow)
    cases = {
        b"[1, 2": "malformed JSON",
        json.dumps([1]).encode(): "a command must be a JSON object",
        json.dumps(
            {"command_id": "x1", "type": "StartRun"}
        ).encode(): "payload.workflow: Field required",
        json.dumps(
            {"command_id": "x2", "type": "StartRun", "payload": {"workflow": "hello", "version": 9}}
        ).encode(): "has no version 9 (latest is 1)",
        json.dumps(
            {"command_id": "x3", "type": "StartRun", "tenant": "bad tenant!"}
        ).encode(): "tenant",
    }
    for offset, (raw, expected) in enumerate(cases.items()):
        receipt = handle_command(record(raw, offset=offset), uow)
        assert receipt is not None
        assert receipt.outcome == "rejected"
        assert expected in receipt.reason, receipt.reason


def test_a_rejected_start_leaves_no_run_behind(uow) -> None:
    publish_hello(uow)
    handle_command(
        record(
            {"command_id": "c1", "type": "StartRun", "payload": {"workflow": "hello", "input": {}}}
        ),
        uow,
    )
    uow.save()
    assert uow.get(run_id_for("default", "c1")) is None


def test_an_invalid_definition_is_rejected_with_its_paths(uow) -> None:
    broken = {**HELLO, "start": "nowhere"}
    receipt = handle_command(
        record({"command_id": "p9", "type": "PublishWorkflow", "payload": {"definition": broken}}),
        uow,
    )
    assert receipt.outcome == "rejected"
    assert "start: unknown node 'nowhere'" in receipt.reason


def test_two_tenants_may_use_the_same_command_id(uow) -> None:
    for tenant in ("acme", "globex"):
        handle_command(
            record(
                {
                    "command_id": f"p-{tenant}",
                    "type": "PublishWorkflow",
                    "tenant": tenant,
                    "payload": {"definition": HELLO},
                }
            ),
            uow,
        )
    start = {
        "command_id": "c1",
        "type": "StartRun",
        "payload": {"workflow": "hello", "input": {"name": "Ada"}},
    }
    first = handle_command(record({**start, "tenant": "acme"}), uow)
    second = handle_command(record({**start, "tenant": "globex"}, offset=1), uow)
    assert first is not None
    assert first.outcome == "accepted"
    assert second is not None
    assert second.outcome == "accepted"
    assert first.result["run_id"] != second.result["run_id"]
    assert uow.get(run_id_for("globex", "c1")).tenant == "globex"


def test_the_callers_correlation_id_is_kept_in_the_outcome(uow) -> None:
    publish_hello(uow)
    receipt = handle_command(
        record(
            {
                "command_id": "c1",
                "type": "StartRun",
                "correlation_id": "order-1842",
                "payload": {"workflow": "nope"},
            }
        ),
        uow,
    )
    assert receipt is not None
    assert receipt.as_result()["correlation_id"] == "order-1842"
    assert receipt.as_result()["status"] == "rejected"


def test_a_command_id_too_long_to_keep_is_rejected_under_its_position(uow) -> None:
    receipt = handle_command(
        record(
            {"command_id": "x" * 201, "type": "StartRun", "payload": {"workflow": "hello"}},
            offset=9,
        ),
        uow,
    )
    assert receipt is not None
    assert receipt.command_id == "heddle.commands/0/9"
    assert "command_id: String should have at most 200 characters" in (receipt.reason or "")


def test_a_command_nested_too_deeply_is_rejected_saying_so(uow) -> None:
    publish_hello(uow)
    deep = b'{"command_id": "d1", "type": "StartRun", "payload": {"workflow": "hello", '
    unreadable = deep + b'"input": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}}"
    too_deep = deep + b'"input": {"x": ' + b"[" * 100 + b"]" * 100 + b"}}}"
    receipts = [
        handle_command(record(raw, offset), uow)
        for offset, raw in enumerate((unreadable, too_deep))
    ]
    assert [(r.outcome, r.command_id) for r in receipts if r] == [
        ("rejected", "heddle.commands/0/0"),
        ("rejected", "d1"),
    ]
    assert receipts[0].reason == "the command nests objects and lists too deeply to read"
    assert receipts[1].reason == (
        "invalid command: payload: Value error, nested deeper than 64 levels of objects and "
        "lists: flatten it"
    )


def on_tenant_topic(value: object, tenant: str = "acme", offset: int = 0) -> Record:
    raw = json.dumps(value).encode()
    return Record(f"heddle.commands.tenant.{tenant}", 0, offset, None, raw)


def decide_bound(uow, value: object, tenant: str = "acme", offset: int = 0):
    return handle_command(on_tenant_topic(value, tenant, offset), uow, tenant=tenant)


def test_a_command_on_a_tenants_topic_acts_for_that_tenant(uow) -> None:
    handle_command(
        record(
            {
                "command_id": "p1",
                "type": "PublishWorkflow",
                "tenant": "acme",
                "payload": {"definition": HELLO},
            }
        ),
        uow,
    )
    start = {
        "command_id": "c1",
        "type": "StartRun",
        "payload": {"workflow": "hello", "input": {"name": "Ada"}},
    }
    receipt = decide_bound(uow, start)  # names no tenant: the topic's
    assert receipt is not None
    assert (receipt.outcome, receipt.tenant) == ("accepted", "acme"), receipt.reason
    assert uow.get(run_id_for("acme", "c1")).workflow == "hello"


def test_a_command_naming_another_tenant_is_rejected_as_the_topics_tenants(uow) -> None:
    publish_hello(uow)  # tenant default's
    forged = {
        "command_id": "c1",
        "type": "StartRun",
        "tenant": "default",
        "payload": {"workflow": "hello"},
    }
    receipt = decide_bound(uow, forged)
    assert receipt is not None
    assert (receipt.outcome, receipt.tenant) == ("rejected", "acme")
    assert receipt.reason == (
        "this topic takes the commands of tenant 'acme' only; the command names tenant 'default'"
    )
    uow.save()
    # The victim's command id is not taken: its own command with that id still runs.
    honest = {**forged, "payload": {"workflow": "hello", "input": {"name": "Ada"}}}
    own = handle_command(record(honest), uow)
    assert own is not None
    assert own.outcome == "accepted"


def test_internal_and_admin_commands_are_refused_on_a_tenants_topic(uow) -> None:
    run_id = "6f1c1b52-0d4e-4b0e-9a51-3c1b2f1f4a10"
    cases = {
        "FireTimer": "FireTimer is sent by Heddle itself (the timer role), never by a tenant",
        "CompleteRemoteTask": "CompleteRemoteTask is sent by Heddle itself",
        "StartSubworkflow": "StartSubworkflow is sent by Heddle itself (the run worker)",
        "CompleteSubworkflow": "CompleteSubworkflow is sent by Heddle itself (the run worker)",
        "ConfigureTenant": "ConfigureTenant is an admin command",
    }
    for offset, (type_, expected) in enumerate(cases.items()):
        command = {"command_id": f"c{offset}", "type": type_, "payload": {"run_id": run_id}}
        receipt = decide_bound(uow, command, offset=offset)
        assert receipt is not None
        assert receipt.outcome == "rejected"
        assert expected in receipt.reason, receipt.reason
