"""The user docs stay true: their examples are run against the code they describe.

Conventions in `docs/*.md`:
- every ```yaml block with `name:` and `nodes:` is a complete definition and must be valid,
  unless the line before it is `<!-- invalid: PATH[, PATH...] -->`: then it must be
  rejected with exactly those problem paths, and a ```text block right after it lists
  the problems exactly as Heddle reports them, one per line;
- the table between `<!-- cel-examples -->` and `<!-- /cel-examples -->` gives each CEL
  expression's value (as JSON) over the ```json block marked `<!-- activation -->`;
- the table between `<!-- template-examples -->` and `<!-- /template-examples -->` gives
  what each template renders over the same activation;
- every ```json block in docs/commands.md parses; those with `command_id` and `payload`
  are command envelopes and must be valid commands.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import re
import sys
import types
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from domain.commands import COMMAND_TYPES
from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid, TemplateError
from domain.expressions import evaluate
from domain.llm import LlmError, LlmRequest, Message, RetryPolicy
from domain.messages import CommandEnvelope, TokenDelta
from domain.runs import WorkflowRun
from domain.templates import render
from handlers.commands.intake import handle_command
from handlers.reactions.agents import drive_agent
from handlers.reactions.model_calls import LlmCall
from handlers.reactions.tools import builtin_tools
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork
from infra.kafka import publish_dead_letter
from infra.llm.retrying import complete_with_retries
from infra.llm.router import ProviderRouter, ProviderSettings
from infra.llm.scripted import ScriptedProvider
from infra.relay import Relay
from infra.store import EventStore

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
WORKFLOWS_MD = (DOCS / "workflows.md").read_text()
COMMANDS_MD = (DOCS / "commands.md").read_text()
PROVIDERS_MD = (DOCS / "providers.md").read_text()
FENCE = re.compile(
    r"(?:<!--[ \t]*(?P<mark>[^\n]*?)[ \t]*-->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)


def blocks(markdown: str) -> list[tuple[str, str, str]]:
    """Every fenced block as (language, body, the marker comment on the line before)."""
    return [(m["lang"], m["body"], m["mark"] or "") for m in FENCE.finditer(markdown)]


def definitions(markdown: str) -> list[tuple[dict[str, Any], str]]:
    found = []
    for lang, body, mark in blocks(markdown):
        try:
            document = yaml.safe_load(body) if lang == "yaml" else None
        except yaml.YAMLError:
            continue  # reported by test_every_yaml_block_in_the_docs_parses
        if isinstance(document, dict) and "name" in document and "nodes" in document:
            found.append((document, mark))
    return found


def documented(name: str) -> dict[str, Any]:
    return next(d for d, _ in definitions(WORKFLOWS_MD) if d["name"] == name)


def table(markdown: str, marker: str) -> list[tuple[str, str]]:
    """The two code cells of each row of the table between `<!-- marker -->` and its end."""
    section = markdown.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = re.findall(r"`((?:[^`])+)`", line.replace("\\|", "|"))
        if len(cells) == 2:
            rows.append((cells[0], cells[1]))
    return rows


ACTIVATION = json.loads(next(b for lang, b, mark in blocks(WORKFLOWS_MD) if mark == "activation"))
VALID = [(d["name"], d) for d, mark in definitions(WORKFLOWS_MD) if not mark.startswith("invalid")]
INVALID = [
    (d, mark.removeprefix("invalid:").strip())
    for d, mark in definitions(WORKFLOWS_MD)
    if mark.startswith("invalid")
]


def test_every_yaml_block_in_the_docs_parses() -> None:
    for markdown in (WORKFLOWS_MD, COMMANDS_MD):
        for lang, body, _ in blocks(markdown):
            if lang == "yaml":
                yaml.safe_load(body)


@pytest.mark.parametrize(("name", "document"), VALID, ids=[name for name, _ in VALID])
def test_every_complete_definition_in_the_workflow_docs_is_valid(
    name: str, document: dict[str, Any]
) -> None:
    allowed = frozenset({"*.example.com"})  # the docs' HTTP tools call example.com
    assert parse_definition(document, allowed).name == name


def test_the_workflow_docs_show_valid_and_invalid_definitions() -> None:
    assert {"hello", "refund", "escalation", "flaky", "set-example"} <= {n for n, _ in VALID}
    assert len(INVALID) >= 5


@pytest.mark.parametrize(("document", "paths"), INVALID, ids=[p for _, p in INVALID])
def test_every_definition_marked_invalid_is_rejected_with_exactly_the_problems_shown(
    document: dict[str, Any], paths: str
) -> None:
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition(document)
    problems = caught.value.problems
    assert sorted(p.path for p in problems) == sorted(p.strip() for p in paths.split(","))
    after = WORKFLOWS_MD.split(f"<!-- invalid: {paths} -->", 1)[1]
    shown = [body for lang, body, _ in blocks(after)[1:2] if lang == "text"]
    assert shown, f"no ```text block with the problems after the definition marked {paths}"
    assert shown[0].strip().splitlines() == [str(p) for p in problems]


def test_the_hello_example_in_the_docs_is_the_one_in_examples() -> None:
    example = yaml.safe_load((ROOT / "examples" / "hello.yaml").read_text())
    assert documented("hello") == example


def test_the_published_version_the_cli_example_prints_is_hellos_content_hash() -> None:
    content_hash = parse_definition(documented("hello")).content_hash()
    assert f"# published hello v1 ({content_hash[:19]})" in WORKFLOWS_MD


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_workflow_is_valid(path: Path) -> None:
    parse_definition(yaml.safe_load(path.read_text()))


def test_the_cel_examples_give_the_values_shown() -> None:
    rows = table(WORKFLOWS_MD, "cel-examples")
    assert len(rows) >= 10
    for expression, value in rows:
        assert evaluate(expression, ACTIVATION) == json.loads(value), expression


def test_the_template_examples_render_as_shown() -> None:
    rows = table(WORKFLOWS_MD, "template-examples")
    assert len(rows) >= 5
    for template, rendered in rows:
        assert render(template, ACTIVATION) == rendered, template


def test_templates_fail_on_undefined_variables_and_unsafe_access_as_the_docs_say() -> None:
    with pytest.raises(TemplateError) as undefined:
        render("{{ input.nickname }}", ACTIVATION)
    assert f"`{undefined.value}`" in WORKFLOWS_MD
    with pytest.raises(TemplateError, match=r"^not allowed in a template: "):
        render("{{ ''.__class__ }}", ACTIVATION)


# Runs of the documented workflows, with the scripted provider answering in place of workers.


async def run_to_the_end(document: dict[str, Any], input: dict[str, Any]) -> WorkflowRun:
    spec = parse_definition(document)
    run = WorkflowRun(
        run_id=uuid.uuid4(),
        tenant="default",
        actor="docs",
        workflow=spec.name,
        version=1,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input=input,
        command_id="c",
    )
    run.advance(now=datetime.now(UTC))
    provider = ScriptedProvider()
    while running := [n for n, s in run.nodes.items() if s["status"] == "running"]:
        for node_id in running:
            result = await provider.complete(run.llm_request(node_id))
            run.complete_llm_call(
                node_id, run.nodes[node_id]["attempt"], result, now=datetime.now(UTC)
            )
    return run


def statuses(run: WorkflowRun) -> dict[str, str]:
    return {node_id: state["status"] for node_id, state in run.nodes.items()}


async def test_the_hello_run_completes_with_the_output_the_docs_show() -> None:
    run = await run_to_the_end(documented("hello"), {"name": "Ada"})
    assert run.status == "completed"
    assert statuses(run)["regular"] == "skipped"
    assert f"`{json.dumps(run.output)}`" in WORKFLOWS_MD


async def test_the_refund_join_runs_after_the_branch_taken_and_skips_the_other() -> None:
    large = await run_to_the_end(
        documented("refund"), {"customer": "Ada", "amount": 250, "reason": "broken"}
    )
    assert large.status == "completed"
    assert statuses(large) == {
        "triage": "completed",
        "review": "completed",
        "approve": "skipped",
        "reply": "completed",
    }
    assert large.output == {"verdict": "rejected", "letter": "Dear Ada, your refund was rejected."}
    small = await run_to_the_end(
        documented("refund"), {"customer": "Bo", "amount": 20, "reason": "late"}
    )
    assert statuses(small) == {
        "triage": "completed",
        "review": "skipped",
        "approve": "completed",
        "reply": "completed",
    }
    assert small.output == {"verdict": "approved", "letter": "Dear Bo, your refund was approved."}


async def test_a_node_with_two_parents_waits_for_the_one_still_on_its_way() -> None:
    high = await run_to_the_end(documented("escalation"), {"priority": "high"})
    assert high.variables["message"].endswith("queue urgent")
    low = await run_to_the_end(documented("escalation"), {"priority": "low"})
    assert statuses(low)["escalate"] == "skipped"
    assert low.variables["message"].endswith("queue normal")


async def test_the_flaky_example_succeeds_after_its_scripted_failures() -> None:
    node = documented("flaky")["nodes"]["ask"]
    request = LlmRequest(
        model=node["model"],
        options=node["options"],
        messages=[Message(role="user", content="Run 42: summarise the news")],
    )
    failed: list[int] = []

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        failed.append(attempt)

    async def no_wait(seconds: float) -> None:
        return None

    result = await complete_with_retries(
        ScriptedProvider(), request, RetryPolicy(), on_failed, sleep=no_wait
    )
    assert failed == [1, 2]
    assert result.text == "summary of summarise the news"
    assert RetryPolicy().max_attempts == 4
    assert "up to 4 tries in all" in WORKFLOWS_MD


async def test_the_agent_example_calls_the_calculator_and_answers_as_the_docs_say(
    uow: UnitOfWork,
) -> None:
    spec = parse_definition(documented("arithmetic"))
    run = WorkflowRun(
        run_id=uuid.uuid4(),
        tenant="default",
        actor="docs",
        workflow=spec.name,
        version=1,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input={"question": "six times seven"},
        command_id="c",
    )
    run.advance(now=datetime.now(UTC))
    uow.add(run)
    provider = ScriptedProvider()

    async def complete(request: LlmRequest, tenant: str, on_failed: Any, on_delta: Any) -> Any:
        return await provider.complete(request)

    async def decide(decision: Any) -> Any:
        return decision()

    call = LlmCall(run.id, "solve", 1, run.llm_request("solve"), kind="agent")
    await drive_agent(call, uow, complete, builtin_tools().run, decide)
    assert run.status == "completed"
    [tool] = [e for e in run.pending_events if type(e).__name__ == "ToolCallCompleted"]
    assert (tool.arguments, tool.content) == ({"expression": "6 * 7"}, "42")
    assert f"`{run.variables['answer']}`" in WORKFLOWS_MD


def test_the_token_delta_in_the_provider_docs_has_the_fields_the_worker_publishes() -> None:
    shown = json.loads(next(b for _, b, mark in blocks(PROVIDERS_MD) if mark == "token-delta"))
    delta = TokenDelta(
        uuid.UUID(shown["run_id"]),
        shown["node_id"],
        shown["attempt"],
        shown["step"],
        shown["try"],
        shown["sequence"],
        shown["text"],
    )
    assert delta.as_message() == shown
    for field in shown:
        assert f"`{field}`" in PROVIDERS_MD


async def test_an_unknown_provider_fails_with_the_error_the_docs_quote() -> None:
    router = ProviderRouter(ProviderSettings())
    with pytest.raises(LlmError) as caught:
        await router.complete(LlmRequest(model="mistral:large", messages=[]))
    assert caught.value.kind == "fatal"
    assert f"`{caught.value}`" in WORKFLOWS_MD


# JSON Schemas


def load_generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_schemas_generate", DOCS / "schemas" / "generate.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_json_schemas_are_what_the_models_generate() -> None:
    generator = load_generator()
    generated = generator.schemas()
    assert set(generated) == {"command-envelope.json", *PAYLOAD_SCHEMAS.values()}
    for name, schema in generated.items():
        committed = (DOCS / "schemas" / name).read_text()
        assert committed == generator.render(schema), f"regenerate docs/schemas/{name}"
        jsonschema.Draft202012Validator.check_schema(json.loads(committed))


# Commands


def schema(name: str) -> dict[str, Any]:
    return json.loads((DOCS / "schemas" / name).read_text())


PAYLOAD_SCHEMAS = {
    "StartRun": "start-run.json",
    "PublishWorkflow": "publish-workflow.json",
    "ForkRun": "fork-run.json",
    "EditGraph": "edit-graph.json",
    "CompleteTask": "complete-task.json",
    "ReassignTask": "reassign-task.json",
    "PauseRun": "pause-run.json",
    "ResumeRun": "resume-run.json",
    "CancelRun": "cancel-run.json",
    "CompleteRun": "complete-run.json",
    "SetVariables": "set-variables.json",
    "SkipNode": "skip-node.json",
    "SignalRun": "signal-run.json",
    "FireTimer": "fire-timer.json",
    "CompleteRemoteTask": "complete-remote-task.json",
    "StartSubworkflow": "start-subworkflow.json",
    "CompleteSubworkflow": "complete-subworkflow.json",
    "OpenThread": "open-thread.json",
    "PostMessage": "post-message.json",
    "CompleteThread": "complete-thread.json",
    "ConfigureTenant": "configure-tenant.json",
    "CreateSchedule": "create-schedule.json",
    "PauseSchedule": "pause-schedule.json",
    "ResumeSchedule": "resume-schedule.json",
    "DeleteSchedule": "delete-schedule.json",
    "FireSchedule": "fire-schedule.json",
    "UpsertCustomer": "upsert-customer.json",
    "UpdateCustomer": "update-customer.json",
    "RecordCustomerSignal": "record-customer-signal.json",
    "EvaluateCustomer": "evaluate-customer.json",
    "SnoozeQueueItem": "snooze-queue-item.json",
    "PublishPlaybook": "publish-playbook.json",
}


def check_command(value: dict[str, Any]) -> CommandEnvelope:
    """A command the intake would accept the shape of, by the models and the schemas."""
    envelope = CommandEnvelope.model_validate(value)
    COMMAND_TYPES[envelope.type].model_validate(envelope.payload)
    jsonschema.validate(value, schema("command-envelope.json"))
    jsonschema.validate(envelope.payload, schema(PAYLOAD_SCHEMAS[envelope.type]))
    return envelope


def test_every_command_example_in_the_docs_is_a_valid_command() -> None:
    values = [json.loads(body) for lang, body, _ in blocks(COMMANDS_MD) if lang == "json"]
    envelopes = [v for v in values if "command_id" in v and "payload" in v]
    assert {e["type"] for e in envelopes} == set(COMMAND_TYPES)
    for envelope in envelopes:
        check_command(envelope)
        if envelope["type"] == "PublishWorkflow":
            parse_definition(envelope["payload"]["definition"])


def test_every_command_type_is_documented_with_its_payload_schema() -> None:
    assert set(PAYLOAD_SCHEMAS) == set(COMMAND_TYPES)
    for command_type, file in PAYLOAD_SCHEMAS.items():
        assert f"### `{command_type}`" in COMMANDS_MD
        assert f"schemas/{file}" in COMMANDS_MD
        assert schema(file)["title"] == command_type


def test_the_console_producer_example_keys_its_start_run_by_the_run_id() -> None:
    shell = "\n".join(body for lang, body, _ in blocks(COMMANDS_MD) if lang == "sh")
    line = re.search(r"echo '([^']*)'", shell)
    assert line is not None
    key, value = line[1].split("|", 1)
    envelope = check_command(json.loads(value))
    assert envelope.type == "StartRun"
    assert key == envelope.payload["run_id"]
    assert "parse.key=true" in shell
    assert "key.separator='|'" in shell


def python_snippets() -> list[str]:
    return [body for lang, body, _ in blocks(COMMANDS_MD) if lang == "python"]


def test_every_python_snippet_in_the_command_docs_compiles() -> None:
    assert python_snippets()
    for snippet in python_snippets():
        ast.parse(snippet)


async def test_the_aiokafka_example_sends_a_valid_start_run_keyed_by_its_run_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[str, bytes, bytes]] = []

    class Producer:
        def __init__(self, **config: Any) -> None:
            assert config["bootstrap_servers"]

        async def start(self) -> None:
            return None

        async def stop(self) -> None:
            return None

        async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
            sent.append((topic, value, key))

    fake = types.ModuleType("aiokafka")
    fake.AIOKafkaProducer = Producer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiokafka", fake)
    producer_snippet = next(s for s in python_snippets() if "AIOKafkaProducer" in s)
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(producer_snippet, "docs/commands.md", "exec"), namespace)
    await namespace["main"]()
    [(topic, value, key)] = sent
    envelope = check_command(json.loads(value))
    assert topic == "heddle.commands"
    assert envelope.type == "StartRun"
    assert key.decode() == envelope.payload["run_id"]


def hello() -> dict[str, Any]:
    return documented("hello")


RUN_ID = "0b6f3c2e-8a59-4f7e-9d43-2f1c6a7d5e10"
NESTED: Any = 0
for _ in range(65):
    NESTED = [NESTED]
BAD_COMMANDS: list[bytes | dict[str, Any]] = [
    b"{not json",
    b"[1, 2]",
    b'{"command_id": "deep", "payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    {"command_id": "c0", "type": "StartRun", "payload": {"x": NESTED}},
    {"type": "StartRun", "payload": {}},
    {"command_id": "c1", "type": "StartRun", "tenant": "acme corp", "payload": {}},
    {"command_id": "c2", "type": "StopRun", "payload": {}},
    {"command_id": "c3", "type": "StartRun", "payload": {"workflow": "hello", "inputs": {}}},
    {"command_id": "c4", "type": "StartRun", "payload": {"workflow": "hello", "version": 0}},
    {"command_id": "c5", "type": "StartRun", "payload": {"workflow": "helo"}},
    {
        "command_id": "c6",
        "type": "StartRun",
        "payload": {"workflow": "hello", "version": 7, "input": {"name": "Ada"}},
    },
    {
        "command_id": "c7",
        "type": "StartRun",
        "payload": {"workflow": "hello", "input": {"nome": "Ada"}},
    },
    {
        "command_id": "c8",
        "type": "StartRun",
        "payload": {"workflow": "hello", "input": {"name": 42}},
    },
    {
        "command_id": "c9",
        "type": "StartRun",
        "payload": {"workflow": "hello", "run_id": RUN_ID, "input": {"name": "Ada"}},
    },
]


def send(uow: UnitOfWork, offset: int, command: bytes | dict[str, Any]) -> dict[str, Any] | None:
    value = command if isinstance(command, bytes) else json.dumps(command).encode()
    receipt = handle_command(Record("heddle.commands", 0, offset, b"key", value), uow)
    return receipt.as_result() if receipt else None


def test_every_rejection_reason_quoted_in_the_command_docs_is_what_the_intake_says(
    uow: UnitOfWork,
) -> None:
    published = send(
        uow, 1, {"command_id": "p1", "type": "PublishWorkflow", "payload": {"definition": hello()}}
    )
    assert published
    assert published["status"] == "accepted"
    first = send(
        uow,
        2,
        {
            "command_id": "s1",
            "type": "StartRun",
            "payload": {"workflow": "hello", "run_id": RUN_ID, "input": {"name": "Ada"}},
        },
    )
    assert first
    assert first["status"] == "accepted"
    invalid = json.loads(json.dumps(hello()))
    invalid["nodes"]["route"]["cases"][0]["next"] = "vipp"
    commands = [
        *BAD_COMMANDS,
        {"command_id": "p2", "type": "PublishWorkflow", "payload": {"definition": invalid}},
    ]
    reasons = []
    for offset, command in enumerate(commands, start=3):
        outcome = send(uow, offset, command)
        assert outcome
        assert outcome["status"] == "rejected"
        assert outcome["result"] == {}
        reasons.append(outcome["reason"])
    section = COMMANDS_MD.split("## Rejections", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    quoted = [re.findall(r"`([^`]+)`", row.rsplit(" | ", 1)[1])[0] for row in rows]
    assert sorted(quoted) == sorted(reasons)


def test_a_message_without_an_id_is_recorded_under_where_it_was_read_from(uow: UnitOfWork) -> None:
    outcome = send(uow, 5, b"{not json")
    assert outcome
    assert outcome["command_id"] == "heddle.commands/0/5"
    assert outcome["type"] == "?"
    assert "`heddle.commands/0/5`" in COMMANDS_MD


def test_a_repeated_command_id_changes_nothing_and_reports_nothing(uow: UnitOfWork) -> None:
    command = {"command_id": "p1", "type": "PublishWorkflow", "payload": {"definition": hello()}}
    first = send(uow, 1, command)
    uow.save()
    changed = json.loads(json.dumps(command))
    changed["payload"]["definition"]["description"] = "changed"
    assert send(uow, 2, changed) is None
    assert first
    assert first["result"]["version"] == 1
    again = send(uow, 3, {**command, "command_id": "p2"})
    assert again
    assert again["result"] == first["result"]


def test_the_command_envelope_fields_are_the_documented_ones() -> None:
    for field in CommandEnvelope.model_fields:
        assert f"| `{field}` |" in COMMANDS_MD
    outcome_block = next(
        json.loads(b)
        for lang, b, _ in blocks(COMMANDS_MD)
        if lang == "json" and '"status"' in b and '"payload"' not in b
    )
    assert set(outcome_block) == {
        "command_id",
        "type",
        "tenant",
        "correlation_id",
        "status",
        "reason",
        "result",
    }


# Events and dead letters


class FakeBroker:
    """Collects what would be published; answers as an acknowledging broker would."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    async def publish(self, value: bytes, topic: str, **kwargs: Any) -> Any:
        self.published.append({"value": value, "topic": topic, **kwargs})
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeProducer:
    """Collects what the relay sends; acknowledges at once, as a broker would."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> asyncio.Future[None]:
        self.sent.append({"value": value, "topic": topic, **kwargs})
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_event_envelope_and_headers_are_the_ones_the_relay_publishes() -> None:
    store = EventStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    uow = UnitOfWork(store)
    send(
        uow, 1, {"command_id": "p1", "type": "PublishWorkflow", "payload": {"definition": hello()}}
    )
    send(
        uow,
        2,
        {
            "command_id": "s1",
            "type": "StartRun",
            "payload": {"workflow": "hello", "run_id": RUN_ID, "input": {"name": "Ada"}},
        },
    )
    uow.save()
    producer = FakeProducer()
    relay = Relay(store, "postgresql://unused", "heddle.events", producer=producer)
    await relay.publish_pending()
    store.close()
    messages = {json.loads(m["value"])["type"]: m for m in producer.sent}
    documented_event = next(
        json.loads(b) for lang, b, _ in blocks(COMMANDS_MD) if lang == "json" and '"position"' in b
    )
    actual = messages[documented_event["type"]]
    envelope = json.loads(actual["value"])
    assert set(envelope) == set(documented_event)
    assert envelope["data"] == documented_event["data"]
    assert actual["key"] == RUN_ID.encode()
    for header, _ in actual["headers"]:
        assert f"`{header}`" in COMMANDS_MD
    for event_type in messages:
        assert event_type.split(".")[0] in COMMANDS_MD
        assert event_type.split(".")[1] in COMMANDS_MD


async def test_a_dead_letter_carries_the_headers_the_docs_list() -> None:
    broker = FakeBroker()
    record = Record("heddle.events", 2, 41, b"k", b"{}", {"type": "WorkflowRun.Started"})
    await publish_dead_letter(broker, "heddle.dlq", record, ValueError("boom"))  # type: ignore[arg-type]
    [message] = broker.published
    assert message["key"] == b"k"
    assert message["value"] == b"{}"
    headers = message["headers"]
    assert headers["x-error"] == "ValueError: boom"
    for header in set(headers) - set(record.headers):
        assert f"| `{header}` |" in COMMANDS_MD
