"""The run worker's loop (`run_nodes`) driven with the in-memory store and the scripted
provider, no Kafka: each batch of relayed events gets its model calls made and recorded."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification, Recording

from domain.commands import run_id_for
from domain.llm import LlmRequest, LlmResult, RetryPolicy
from domain.messages import TokenDelta
from domain.runs import WorkflowRun
from handlers.commands.intake import handle_command
from handlers.reactions.model_calls import CompleteLlm, OnDelta, OnTryFailed
from handlers.reactions.pipeline import Pipeline, Progress, run_nodes
from handlers.reactions.tools import builtin_tools
from handlers.reactions.worker import WorkerPorts
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork
from infra.http_tools import HttpTools, ToolRunner
from infra.llm.retrying import RetryingLlm
from infra.llm.router import ProviderRouter
from infra.llm.settings import ProviderSettings
from infra.relay import Relay
from infra.store import EventStore, Positions

CHAIN = {
    "name": "chain",
    "inputs": {"type": "object", "properties": {"name": {"type": "string"}}},
    "start": "greet",
    "nodes": {
        "greet": {
            "kind": "llm",
            "model": "scripted:echo",
            "prompt": "Hello {{ input.name }}",
            "next": "shout",
        },
        "shout": {"kind": "llm", "model": "scripted:echo", "prompt": "{{ nodes.greet.output }}!"},
    },
}
"""Two `llm` nodes in a chain; `scripted:echo` answers with the prompt."""


@pytest.fixture
def store() -> Iterator[EventStore]:
    store = EventStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield store
    store.close()


class Relayed:
    """The store's new events as the relay would publish them on `heddle.events`."""

    def __init__(self, store: EventStore) -> None:
        self.store, self.relay, self.position = store, Relay(store, "unused", "events"), 0

    def new_records(self) -> list[Record]:
        notifications = self.store.recorder.select_notifications(self.position + 1, 1000)
        if notifications:
            self.position = notifications[-1].id
        return self.records(notifications)

    def records(self, notifications: Sequence[Notification], offsets: bool = True) -> list[Record]:
        """As the worker reads them (`offsets=False`: as it has them just saved, before
        the broker gave them an offset)."""
        records = []
        for notification, (key, value, headers) in zip(
            notifications, self.relay.messages(notifications), strict=True
        ):
            headers_ = {name: raw.decode() for name, raw in headers}
            offset = notification.id if offsets else -1
            records.append(Record("events", 0, offset, key, value, headers_))
        return records

    def owned(self, recordings: list[Recording[UUID]]) -> list[Record]:
        """Every just-saved event, as a worker that reads every partition has it."""
        return self.records([recording.notification for recording in recordings], offsets=False)


async def decide(decision: Callable[[], Any]) -> Any:
    return decision()


async def nothing(*_: Any) -> None:
    """Commands and tasks: this workflow sends none."""


def worker_ports(store: EventStore, tokens: list[TokenDelta]) -> WorkerPorts:
    router = ProviderRouter(ProviderSettings())
    return WorkerPorts(
        unit_of_work=partial(UnitOfWork, store),
        positions=Positions(store, "worker@test"),
        decide=decide,
        complete=RetryingLlm(router, RetryPolicy()),
        run_tool=ToolRunner(builtin_tools(), HttpTools(frozenset(), {}, 1024)),
        read_document=partial(nothing),
        publish_token=tokens.append,
        send_command=nothing,
        send_tasks=nothing,
        create_task_topics=nothing,
    )


def command(store: EventStore, type_: str, payload: dict[str, Any], command_id: str) -> None:
    uow = UnitOfWork(store)
    body = {"command_id": command_id, "type": type_, "actor": "ada", "payload": payload}
    receipt = handle_command(Record("commands", 0, 0, None, json.dumps(body).encode()), uow)
    uow.save()
    assert receipt is not None
    assert receipt.outcome == "accepted", receipt.reason


async def test_a_started_chain_gets_each_answer_recorded_and_its_next_node_started(
    store: EventStore,
) -> None:
    command(store, "PublishWorkflow", {"definition": CHAIN}, "publish")
    command(store, "StartRun", {"workflow": "chain", "input": {"name": "Ada"}}, "start")
    run_id = run_id_for("default", "start")
    relayed, ports = Relayed(store), worker_ports(store, [])

    await run_nodes(relayed.new_records(), ports)

    run = store.repository.get(run_id)
    assert isinstance(run, WorkflowRun)
    assert run.nodes["greet"]["output"] == "Hello Ada"
    assert run.nodes["shout"]["status"] == "running"
    assert run.status == "running"

    await run_nodes(relayed.new_records(), ports)

    run = store.repository.get(run_id)
    assert run.nodes["shout"]["output"] == "Hello Ada!"
    assert run.status == "completed"


async def test_a_batch_delivered_again_calls_no_model_twice(store: EventStore) -> None:
    command(store, "PublishWorkflow", {"definition": CHAIN}, "publish")
    command(store, "StartRun", {"workflow": "chain", "input": {"name": "Ada"}}, "start")
    relayed, ports = Relayed(store), worker_ports(store, [])
    batch = relayed.new_records()
    await run_nodes(batch, ports)
    version = store.repository.get(run_id_for("default", "start")).version

    await run_nodes(batch, ports)

    assert store.repository.get(run_id_for("default", "start")).version == version


class CountingModel:
    """The scripted model behind the real retry layer, counting calls by prompt; `during`
    runs while the model answers a prompt that contains its key (another writer's change
    landing mid-call)."""

    def __init__(self, inner: CompleteLlm, during: dict[str, Callable[[], None]]) -> None:
        self.inner, self.during, self.prompts = inner, during, Counter[str]()

    async def __call__(
        self,
        request: LlmRequest,
        tenant: str,
        on_try_failed: OnTryFailed,
        on_delta: OnDelta | None = None,
    ) -> LlmResult:
        prompt = request.messages[-1].content
        self.prompts[prompt] += 1
        for key, change in self.during.items():
            if key in prompt:
                change()
        return await self.inner(request, tenant, on_try_failed, on_delta)


async def test_a_run_changed_mid_call_repeats_no_call_and_keeps_both_changes(
    store: EventStore,
) -> None:
    command(store, "PublishWorkflow", {"definition": CHAIN}, "publish")
    for name in ("Ada", "Grace", "Alan"):
        command(store, "StartRun", {"workflow": "chain", "input": {"name": name}}, name)
    grace = run_id_for("default", "Grace")
    relayed, ports = Relayed(store), worker_ports(store, [])
    set_while_answering = partial(
        command, store, "SetVariables",
        {"run_id": str(grace), "variables": {"tier": "gold"}, "reason": "mid-call"}, "set",
    )  # fmt: skip
    model = CountingModel(ports.complete, {"Grace": set_while_answering})

    await run_nodes(relayed.new_records(), dataclasses.replace(ports, complete=model))

    assert model.prompts == {"Hello Ada": 1, "Hello Grace": 1, "Hello Alan": 1}
    for name in ("Ada", "Grace", "Alan"):
        run = store.repository.get(run_id_for("default", name))
        assert run.nodes["greet"]["output"] == f"Hello {name}"
        assert run.nodes["shout"]["status"] == "running"
    assert store.repository.get(grace).variables["tier"] == "gold"


async def test_a_saved_answer_starts_the_next_node_at_once_and_its_delivery_repeats_nothing(
    store: EventStore,
) -> None:
    """Eager continuation: the worker that reads a run's partition starts its next node as
    soon as the answer is saved; the events, when the broker delivers them, are known."""
    command(store, "PublishWorkflow", {"definition": CHAIN}, "publish")
    command(store, "StartRun", {"workflow": "chain", "input": {"name": "Ada"}}, "start")
    run_id = run_id_for("default", "start")
    relayed, ports = Relayed(store), worker_ports(store, [])
    model = CountingModel(ports.complete, {})
    pipeline = Pipeline(dataclasses.replace(ports, complete=model, owned_records=relayed.owned))
    try:
        await (await pipeline.take(relayed.new_records()))
        await pipeline.drained()
        assert store.repository.get(run_id).status == "completed", "answered with no delivery"

        version = store.repository.get(run_id).version
        delivered = relayed.new_records()
        await (await pipeline.take(delivered))
    finally:
        await pipeline.close()

    assert {r.headers["type"] for r in delivered} >= {"WorkflowRun.NodeStarted"}
    assert model.prompts == {"Hello Ada": 1, "Hello Ada!": 1}
    assert store.repository.get(run_id).nodes["shout"]["output"] == "Hello Ada!"
    assert store.repository.get(run_id).version == version, "the delivery recorded nothing"


def batch_of(*offsets: int, partition: int = 0) -> list[Record]:
    return [Record("events", partition, offset, None, b"") for offset in offsets]


async def test_a_partition_is_committed_only_up_to_the_batches_whose_outcomes_are_saved() -> None:
    """A crash may repeat the work in flight, never skip it: later batches finishing
    first do not move the commit past an earlier one still in flight, or one being read
    again after its work failed."""
    loop = asyncio.get_running_loop()
    progress = Progress()
    first, second, third = loop.create_future(), loop.create_future(), loop.create_future()
    progress.add(batch_of(0, 1), first)
    progress.add(batch_of(2, 3), second)
    progress.add(batch_of(4), third)

    second.set_result(None)
    assert progress.settled() == ({}, [])
    first.set_result(None)
    assert progress.settled() == ({"events:0": 3}, [])

    third.set_exception(RuntimeError("a tool broke"))
    committable, failed = progress.settled()
    assert committable == {}
    assert [b.first for b in failed] == [4]
    later = loop.create_future()
    progress.add(batch_of(5), later)
    later.set_result(None)
    assert progress.settled() == ({}, []), "the failed batch holds the partition back"

    again = loop.create_future()
    progress.add(batch_of(4, 5), again)  # read again from its first record
    again.set_result(None)
    assert progress.settled() == ({"events:0": 5}, [])
