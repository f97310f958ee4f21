"""Subworkflows against the in-memory store: the worker's reactions (commands with ids
derived from the events) and the intake's decisions, delivered until nothing is left."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from domain.commands import run_id_for
from domain.runs import MAX_DEPTH
from handlers.commands.intake import handle_command
from handlers.reactions.children import REACTS_TO, subworkflow_commands
from handlers.reactions.events import decode_events
from handlers.reactions.worker import WORKS_ON
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork
from infra.store import EventStore

EXAMPLES = Path(__file__).parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


class Loop:
    """Commands in, events out, reactions back in: Kafka without Kafka."""

    def __init__(self) -> None:
        self.store = EventStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.seen = 0
        self.offset = 0
        self.sent: list[dict[str, Any]] = []
        self.receipts: dict[str, Any] = {}

    def command(self, type_: str, payload: dict[str, Any], command_id: str) -> None:
        self._decide({"command_id": command_id, "type": type_, "payload": payload})
        self.settle()

    def _decide(self, command: dict[str, Any]) -> None:
        uow = UnitOfWork(self.store)
        self.offset += 1
        raw = json.dumps(command).encode()
        receipt = handle_command(Record("c", 0, self.offset, None, raw), uow)
        if receipt is not None:
            self.receipts[receipt.command_id] = receipt
        uow.save()

    def records(self, after: int) -> list[Record]:
        """Events stored after position `after`, as the relay publishes them."""
        records: list[Record] = []
        while notifications := self.store.notification_log.select(after + 1, 10):
            after = notifications[-1].id
            for n in notifications:
                envelope = self.store.envelope(n)
                records.append(
                    Record(
                        "e",
                        0,
                        n.id,
                        None,
                        json.dumps(envelope).encode(),
                        {"type": envelope["type"]},
                    )
                )
        return records

    def settle(self) -> None:
        while records := self.records(self.seen):
            self.seen = records[-1].offset
            for envelope, _ in subworkflow_commands(
                decode_events(records, REACTS_TO), UnitOfWork(self.store)
            ):
                self.sent.append(envelope.model_dump())
                self._decide(envelope.model_dump())

    def run(self, run_id: UUID) -> Any:
        return UnitOfWork(self.store).get(run_id)

    def publish(self, document: dict[str, Any]) -> None:
        self.command("PublishWorkflow", {"definition": document}, f"publish-{document['name']}")

    def start(self, workflow: str, input: dict[str, Any], command_id: str = "s1") -> Any:
        self.command("StartRun", {"workflow": workflow, "input": input}, command_id)
        return self.run(run_id_for("default", command_id))


# examples/welcome.yaml without its model call (this loop runs no worker)
WELCOME = {
    **example("welcome"),
    "nodes": {"write": {"kind": "set", "vars": {"message": "Welcome aboard, {{ input.name }}!"}}},
}


@pytest.fixture
def loop() -> Loop:
    loop = Loop()
    loop.publish(WELCOME)
    loop.publish(example("subworkflow"))
    return loop


def child_of(loop: Loop, parent: Any, node: str = "welcome") -> Any:
    return loop.run(
        UUID(parent.nodes[node]["input"]["run_id"])
        if "input" in parent.nodes[node]
        else UUID(next(iter(parent.children)))
    )


FAILING = {
    "name": "welcome",
    "start": "check",
    "nodes": {"check": {"kind": "tool", "tool": "calculator", "arguments": {"expression": "1 +"}}},
}


def fail_child(loop: Loop, child_id: str) -> None:
    """What the worker records when the child's calculator refuses `1 +`."""
    uow = UnitOfWork(loop.store)
    uow.get(UUID(child_id)).complete_tool_node(
        "check", 1, False, "error: not arithmetic", now=datetime.now(UTC)
    )
    uow.save()
    loop.settle()


def test_the_parent_node_completes_with_the_childs_output(loop: Loop) -> None:
    parent = loop.start("onboard", {"customer": "Ada"})
    assert parent.status == "completed"
    assert parent.variables["welcomed"] == {"message": "Welcome aboard, Ada!"}
    assert parent.variables["note"] == "Sent: Welcome aboard, Ada!"
    child = child_of(loop, parent)
    assert child.status == "completed"
    assert child.tenant == parent.tenant
    assert child.parent == {
        "run_id": str(parent.id),
        "node_id": "welcome",
        "attempt": 1,
        "workflow": "onboard",
        "depth": 1,
    }


def test_redelivered_events_send_the_same_commands_which_change_nothing(loop: Loop) -> None:
    parent = loop.start("onboard", {"customer": "Ada"})
    first = [c["command_id"] for c in loop.sent]
    version = loop.run(parent.id).version
    loop.seen = 0  # deliver every event again
    loop.settle()
    again = [c["command_id"] for c in loop.sent][len(first) :]
    assert again
    assert set(again) <= set(first)
    assert loop.run(parent.id).version == version
    assert len(loop.run(parent.id).children) == 1


def test_a_failing_child_fails_the_node_with_the_childs_reason_and_class(loop: Loop) -> None:
    loop.command("PublishWorkflow", {"definition": FAILING}, "p-failing")
    parent = loop.start("onboard", {"customer": "Ada"})
    [child] = parent.children
    fail_child(loop, child)
    parent = loop.run(parent.id)
    assert parent.status == "failed"
    assert parent.error == {
        "node": "welcome",
        "class": "task",
        "child_run_id": child,
        "message": f"child run {child} of welcome failed at node 'check': error: not arithmetic",
    }


def test_a_child_workflow_that_is_not_published_fails_the_node_saying_so(loop: Loop) -> None:
    document = {**example("subworkflow"), "name": "lost"}
    document["nodes"]["welcome"] = {**document["nodes"]["welcome"], "workflow": "nowhere"}
    loop.publish(document)
    parent = loop.start("lost", {"customer": "Ada"})
    assert parent.status == "failed"
    assert parent.error["class"] == "definition"
    assert "no workflow named 'nowhere' is published" in parent.error["message"]


def test_cancelling_the_parent_cancels_its_running_child(loop: Loop) -> None:
    waiting = {
        "name": "welcome",
        "start": "hold",
        "nodes": {"hold": {"kind": "wait", "event": "event.name == 'go'"}},
    }
    loop.command("PublishWorkflow", {"definition": waiting}, "p3")
    parent = loop.start("onboard", {"customer": "Ada"})
    child = child_of(loop, parent)
    assert child.status == "running"
    loop.command("CancelRun", {"run_id": str(parent.id), "reason": "customer left"}, "cancel")
    child = loop.run(child.id)
    assert child.status == "cancelled"
    assert child.error["message"] == f"its parent run {parent.id} no longer waits for it"


def test_a_workflow_that_calls_itself_stops_at_the_depth_limit(loop: Loop) -> None:
    endless = {
        "name": "endless",
        "start": "again",
        "nodes": {"again": {"kind": "subworkflow", "workflow": "endless"}},
    }
    loop.publish(endless)
    top = loop.start("endless", {})
    assert top.status == "failed"
    assert f"more than {MAX_DEPTH}" in top.error["message"]


ASSISTANT = {
    "name": "assistant",
    "tools": {
        "welcome": {
            "description": "Write a welcome message for a customer.",
            "workflow": "welcome",
            "parameters": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            },
        }
    },
    "start": "ask",
    "nodes": {
        "ask": {
            "kind": "agent",
            "model": "scripted:agent",
            "prompt": "Welcome Ada",
            "tools": ["welcome", "calculator"],
            "output": "answer",
        }
    },
}


def test_an_agents_workflow_tool_runs_a_child_whose_output_is_the_tool_result(loop: Loop) -> None:
    from domain.llm import LlmResult, ToolCall, Usage
    from handlers.reactions.agents import agents_to_resume

    loop.publish(ASSISTANT)
    parent = loop.start("assistant", {})
    assert [t.name for t in parent.llm_request("ask").tools] == ["welcome", "calculator"]
    turn = LlmResult(
        text="",
        finish_reason="tool_calls",
        usage=Usage(),
        model="m",
        provider="scripted",
        latency_ms=1.0,
        tool_calls=[ToolCall(id="c1", name="welcome", arguments={"name": "Ada"})],
    )
    uow = UnitOfWork(loop.store)
    to_run = uow.get(parent.id).complete_agent_step("ask", 1, turn, now=datetime.now(UTC))
    uow.save()
    assert to_run == []  # a child run answers it, not the worker
    before = loop.seen
    loop.settle()
    parent = loop.run(parent.id)
    [child_id] = parent.children
    assert parent.children[child_id]["status"] == "completed"
    assert parent.nodes["ask"]["messages"][-1] == {
        "role": "tool",
        "content": '{"message": "Welcome aboard, Ada!"}',
        "tool_call_id": "c1",
        "tool_calls": [],
    }
    assert loop.run(UUID(child_id)).parent["call_id"] == "c1"
    [resumed] = agents_to_resume(
        decode_events(loop.records(before), WORKS_ON), UnitOfWork(loop.store)
    )
    assert resumed.node_id == "ask"
    assert resumed.request.messages[-1].content == '{"message": "Welcome aboard, Ada!"}'


def test_a_workflow_tool_is_refused_in_a_tool_node_with_its_path() -> None:
    from domain.definitions import parse_definition
    from domain.errors import DefinitionInvalid

    document = {**ASSISTANT, "nodes": {"ask": {"kind": "tool", "tool": "welcome"}}}
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition(document)
    assert [p.path for p in caught.value.problems] == ["nodes.ask.tool"]


def test_a_retry_for_task_errors_starts_a_new_child_for_the_next_attempt(loop: Loop) -> None:
    loop.command("PublishWorkflow", {"definition": FAILING}, "p-failing")
    retried = {**example("subworkflow"), "name": "retried"}
    retry = {"attempts": 2, "backoff": "1s", "errors": ["task"]}
    welcome = {**retried["nodes"]["welcome"], "retry": retry}
    retried["nodes"] = {**retried["nodes"], "welcome": welcome}
    loop.publish(retried)
    parent = loop.start("retried", {"customer": "Ada"})
    [first] = parent.children
    fail_child(loop, first)
    parent = loop.run(parent.id)
    assert parent.nodes["welcome"]["status"] == "retrying"
    loop.command("FireTimer", {"run_id": str(parent.id), "timer": "retry:welcome:1"}, "fire")
    parent = loop.run(parent.id)
    [second] = [c for c in parent.children if c != first]
    assert parent.children[second]["attempt"] == 2
    fail_child(loop, second)
    parent = loop.run(parent.id)
    assert parent.status == "failed"
    assert parent.error["message"].endswith("failed at node 'check': error: not arithmetic")


def test_a_pinned_version_starts_that_version_of_the_child(loop: Loop) -> None:
    loop.command("PublishWorkflow", {"definition": FAILING}, "p-v2")  # welcome v2 fails
    pinned = {**example("subworkflow"), "name": "pinned"}
    pinned["nodes"] = {**pinned["nodes"], "welcome": {**pinned["nodes"]["welcome"], "version": 1}}
    loop.publish(pinned)
    parent = loop.start("pinned", {"customer": "Ada"})
    assert parent.status == "completed"
    assert loop.run(UUID(next(iter(parent.children)))).workflow_version == 1
