"""How runs schedule nodes: fan-out and fan-in, maps, and properties that must hold for
any graph (hypothesis draws random DAGs and random orders of model answers)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import project_aggregate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid
from domain.llm import LlmResult, Usage
from domain.runs import WorkflowRun


def start(document: dict[str, Any], input: dict[str, Any] | None = None) -> WorkflowRun:
    spec = parse_definition(document)
    run = WorkflowRun(
        run_id=uuid.uuid4(),
        tenant="default",
        actor="test",
        workflow=spec.name,
        version=1,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input=input or {},
        command_id="c1",
    )
    run.advance(now=datetime.now(UTC))
    return run


def answer(text: str) -> LlmResult:
    return LlmResult(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=1, output_tokens=1),
        model="echo",
        provider="scripted",
        latency_ms=1.0,
    )


def llm(prompt: str, output: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "llm", "model": "scripted:echo", "prompt": prompt, "output": output, **extra}


FAN = {
    "name": "fan",
    "start": "split",
    "nodes": {
        "split": {"kind": "parallel", "branches": ["pros", "cons"]},
        "pros": llm("pros of {{ input.topic }}", "pros", next="meet"),
        "cons": llm("cons of {{ input.topic }}", "cons", next="meet"),
        "meet": {"kind": "join", "output": "both", "next": "sum"},
        "sum": {"kind": "set", "vars": {"done": "yes"}},
    },
}


def test_a_parallel_node_starts_every_branch_and_a_join_waits_for_all_of_them() -> None:
    run = start(FAN, {"topic": "tea"})
    assert [n for n, s in run.nodes.items() if s["status"] == "running"] == ["pros", "cons"]
    run.complete_llm_call("cons", 1, answer("bitter"), now=datetime.now(UTC))
    assert run.nodes["meet"]["status"] == "pending"
    run.complete_llm_call("pros", 1, answer("warm"), now=datetime.now(UTC))
    assert run.status == "completed"
    assert run.variables["both"] == ["warm", "bitter"]  # the definition's order of parents


def problems(document: dict[str, Any]) -> list[str]:
    try:
        parse_definition(document)
    except DefinitionInvalid as error:
        return [str(p) for p in error.problems]
    return []


def test_a_join_needs_two_parents_and_a_parallel_node_needs_no_next() -> None:
    nodes = FAN["nodes"]
    assert problems({**FAN, "nodes": {**nodes, "split": {**nodes["split"], "next": "sum"}}}) == [
        "nodes.split.next: a parallel node goes on through its branches only",
    ]
    assert problems({**FAN, "nodes": {**nodes, "cons": llm("x", "cons", next="sum")}}) == [
        "nodes.meet: a join needs at least two incoming edges; it has 1 (from pros)",
    ]


MAP = {
    "name": "each",
    "start": "titles",
    "nodes": {
        "titles": {
            "kind": "map",
            "items": "input.books",
            "concurrency": 2,
            "output": "titles",
            "do": {"model": "scripted:echo", "prompt": "{{ index }}: title for {{ item }}"},
        },
    },
}


def running_items(run: WorkflowRun, node_id: str = "titles") -> list[int]:
    states = run.nodes[node_id].get("item_states", {})
    return sorted(int(i) for i, s in states.items() if s["status"] == "running")


def test_a_map_runs_its_items_at_most_concurrency_at_a_time_and_keeps_their_order() -> None:
    run = start(MAP, {"books": ["a", "b", "c", "d", "e"]})
    assert running_items(run) == [0, 1]
    assert run.item_state("titles", 1)["input"]["messages"][-1]["content"] == "1: title for b"
    run.complete_llm_call("titles", 1, answer("B"), item=1, now=datetime.now(UTC))
    assert running_items(run) == [0, 2]
    for index, text in [(2, "C"), (0, "A"), (3, "D"), (4, "E")]:
        run.complete_llm_call("titles", 1, answer(text), item=index, now=datetime.now(UTC))
    assert run.status == "completed"
    assert run.variables["titles"] == ["A", "B", "C", "D", "E"]
    assert run.usage["llm_calls"] == 5


def test_a_map_over_nothing_completes_at_once_and_over_a_non_list_fails_with_why() -> None:
    assert start(MAP, {"books": []}).variables == {"titles": []}
    run = start(MAP, {"books": "abc"})
    assert run.status == "failed"
    assert run.error["message"] == "items 'input.books' gave str, expected a list"


def test_a_failed_map_item_fails_the_node_naming_the_item() -> None:
    run = start(MAP, {"books": ["a", "b"]})
    run.fail_node("titles", 1, {"class": "fatal", "message": "401"}, item=1, now=datetime.now(UTC))
    assert run.status == "failed"
    assert run.error == {"node": "titles", "class": "fatal", "message": "item 1: 401", "item": 1}


# Properties over random graphs


@st.composite
def dags(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A random valid definition (a DAG where every node is reachable from n0) and an input
    that decides its switches."""
    size = draw(st.integers(2, 12))
    children: dict[int, set[int]] = {i: set() for i in range(size)}
    for child in range(1, size):
        children[draw(st.integers(0, child - 1))].add(child)
        for parent in draw(st.sets(st.integers(0, child - 1), max_size=2)):
            children[parent].add(child)
    nodes: dict[str, Any] = {}
    picks = {}
    for i in range(size):
        targets = [f"n{c}" for c in sorted(children[i])]
        kind = draw(st.sampled_from(["llm", "set"]))
        node: dict[str, Any] = (
            llm(f"step {i}", f"v{i}") if kind == "llm" else {"kind": "set", "vars": {f"v{i}": i}}
        )
        if len(targets) == 1:
            node["next"] = targets[0]
        elif len(targets) > 1 and draw(st.booleans()):
            node = {"kind": "parallel", "branches": targets}
        elif len(targets) > 1:
            picks[f"n{i}"] = draw(st.integers(0, len(targets) - 1))
            cases = [
                {"when": f'input.picks["n{i}"] == {k}', "next": t}
                for k, t in enumerate(targets[:-1])
            ]
            node = {"kind": "switch", "cases": cases, "default": targets[-1]}
        nodes[f"n{i}"] = node
    return {"name": "random", "start": "n0", "nodes": nodes}, {"picks": picks}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=dags(), order=st.randoms(use_true_random=False))
def test_any_graph_runs_each_node_once_after_its_parents_and_replays_to_the_same_state(
    graph: tuple[dict[str, Any], dict[str, Any]], order: Any
) -> None:
    document, input = graph
    run = start(document, input)
    for _ in range(100):
        waiting = [n for n, s in run.nodes.items() if s["status"] == "running"]
        if not waiting:
            break
        node_id = order.choice(waiting)
        run.complete_llm_call(node_id, 1, answer(f"out of {node_id}"), now=datetime.now(UTC))
    assert run.status == "completed"
    assert {s["status"] for s in run.nodes.values()} <= {"completed", "skipped"}
    events = run.collect_events()
    parents = run.spec.parents
    finished: set[str] = set()
    started: list[str] = []
    for event in events:
        kind = type(event).__name__
        if kind == "NodeStarted":
            assert set(parents[event.node_id]) <= finished, event.node_id
            started.append(event.node_id)
        elif kind == "NodeCompleted":
            finished.add(event.node_id)
        elif kind == "NodesSkipped":
            finished.update(event.node_ids)
    assert len(started) == len(set(started))
    assert set(started) == {n for n, s in run.nodes.items() if s["status"] == "completed"}
    rebuilt = project_aggregate(None, events)
    assert rebuilt.__dict__ == run.__dict__


@st.composite
def looped_dags(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """A random DAG with up to three loop edges, each from an `llm` or `set` node back to
    one of its ancestors, with a bound of 2 or 3 and a `when` that holds or not; and the
    bound of each loop edge by key."""
    document, input = draw(dags())
    nodes = document["nodes"]
    children = {n: _children(node) for n, node in nodes.items()}
    bounds: dict[str, int] = {}
    for _ in range(draw(st.integers(1, 3))):
        source = draw(st.sampled_from(sorted(nodes)))
        node = nodes[source]
        ancestors = sorted(n for n in nodes if n != source and source in _reach(children, n))
        if node["kind"] not in ("llm", "set") or not ancestors:
            continue
        target = draw(st.sampled_from(ancestors))
        bound = draw(st.integers(2, 3))
        edges = node.get("next", [])
        edges = [{"to": edges}] if isinstance(edges, str) else edges
        if any(edge["to"] == target for edge in edges):
            continue
        when = draw(st.sampled_from(["true", "false", "size(vars) % 2 == 0"]))
        node["next"] = [*edges, {"to": target, "loop": {"max_iterations": bound}, "when": when}]
        bounds[f"{source}->{target}"] = bound
    return document, input, bounds


def _children(node: dict[str, Any]) -> list[str]:
    if node["kind"] == "parallel":
        return node["branches"]
    if node["kind"] == "switch":
        return [case["next"] for case in node["cases"]] + [node["default"]]
    next = node.get("next", [])
    return [next] if isinstance(next, str) else [e["to"] for e in next if "loop" not in e]


def _reach(children: dict[str, list[str]], start: str) -> set[str]:
    seen, stack = {start}, [start]
    while stack:
        for child in children[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=looped_dags(), order=st.randoms(use_true_random=False))
def test_any_graph_with_bounded_loops_finishes_within_its_bounds_and_replays_to_the_same_state(
    graph: tuple[dict[str, Any], dict[str, Any], dict[str, int]], order: Any
) -> None:
    document, input, bounds = graph
    run = start(document, input)
    limit = 12 * 3 ** len(bounds) * 2
    for _ in range(limit):
        waiting = [(n, s["attempt"]) for n, s in run.nodes.items() if s["status"] == "running"]
        if not waiting:
            break
        node_id, attempt = order.choice(waiting)
        run.complete_llm_call(node_id, attempt, answer(f"out of {node_id}"), now=datetime.now(UTC))
    assert run.status == "completed"
    assert {s["status"] for s in run.nodes.values()} <= {"completed", "skipped"}
    events = run.collect_events()
    iterations = [e for e in events if type(e).__name__ == "LoopIterated"]
    for event in iterations:
        assert event.iteration <= bounds[f"{event.source}->{event.target}"]
    attempts: dict[str, list[int]] = {}
    for event in events:
        if type(event).__name__ == "NodeStarted":
            attempts.setdefault(event.node_id, []).append(event.attempt)
    for node_id, numbers in attempts.items():
        assert numbers == list(range(1, len(numbers) + 1)), node_id  # unambiguous attempts
    rebuilt = project_aggregate(None, events)
    assert rebuilt.__dict__ == run.__dict__
