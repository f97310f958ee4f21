"""Replay's pure parts, over the golden histories: choosing a point, the timeline, node
facts and diffs, export and import checks, and what the CLI prints."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.application import Application

from api.cli.replay import MARK, format_diff, format_replay
from handlers.replay import (
    HistoryInvalid,
    ReplayError,
    RunExists,
    choose_version,
    diff_runs,
    export_history,
    history_events,
    import_history,
    rebuild,
    replay_view,
    run_state,
)
from projections.run_timeline import summarize

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def history(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.history.json").read_text())  # type: ignore[no-any-return]


def envelopes(document: dict[str, Any], first_position: int = 100) -> list[dict[str, Any]]:
    """The events of a history as the store's envelopes (positions made up)."""
    return [
        {
            "type": e["type"],
            "aggregate_type": "WorkflowRun",
            "aggregate_id": document["run_id"],
            "aggregate_version": e["version"],
            "position": first_position + 3 * i,
            "timestamp": e["timestamp"],
            "data": e["data"],
        }
        for i, e in enumerate(document["events"])
    ]


def rebuilt(document: dict[str, Any], version: int | None = None) -> Any:
    events = history_events(document, uuid.UUID(document["run_id"]))
    return rebuild(events[:version])


@pytest.fixture
def app() -> Iterator[Application[uuid.UUID]]:
    store: Application[uuid.UUID] = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield store
    store.close()


def test_a_point_is_a_version_a_store_position_or_the_end_of_a_node() -> None:
    events = envelopes(history("hello-ada"))
    assert choose_version(events) == 10
    assert choose_version(events, at=3) == 3
    assert choose_version(events, at_position=events[4]["position"] + 1) == 5
    assert choose_version(events, at_node="greet") == 4
    assert choose_version(events, at_node="vip") == 9


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        ({"at": 11}, "the run has events 1 to 10"),
        ({"at_position": 99}, "first event is at position 100"),
        ({"at_node": "nobody"}, "no such node (nodes: greet, route, vip, regular)"),
        ({"at_node": "regular"}, "never completed or failed (skipped)"),
        ({"at": 2, "at_node": "greet"}, "give one of"),
    ],
)
def test_a_point_the_run_never_reached_is_refused_with_why(
    point: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ReplayError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        choose_version(envelopes(history("hello-ada")), **point)


def test_the_state_at_a_node_shows_what_had_happened_and_nothing_later() -> None:
    document = history("hello-ada")
    view = replay_view(envelopes(document), rebuilt(document, 4), summarize)
    assert view["at"] == {
        "version": 4,
        "position": 109,
        "timestamp": document["events"][3]["timestamp"],
        "type": "NodeCompleted",
        "summary": "greet completed",
    }
    assert view["state"]["variables"] == {"greeting": "Say hello to Ada"}
    assert view["state"]["nodes"]["route"] == {"status": "pending", "attempt": 0}
    assert [e["current"] for e in view["timeline"]].count(True) == 1
    assert [e["version"] for e in view["timeline"] if e["after"]] == list(range(5, 11))


def test_the_replay_printout_marks_the_point_and_separates_what_came_later() -> None:
    document = history("hello-ada")
    lines = format_replay(replay_view(envelopes(document), rebuilt(document, 4), summarize))
    assert lines[0].endswith("hello v1  at event 4 of 10")
    marked = [line for line in lines if line.startswith(MARK)]
    assert len(marked) == 1
    assert "NodeCompleted" in marked[0]
    assert marked[0].endswith("greet completed")
    after = lines.index(marked[0]) + 1
    assert "not yet happened" in lines[after]
    assert "state after event 4: running" in lines
    assert any(
        line.split() == ["greet", "completed", '"Say', "hello", "to", 'Ada"'] for line in lines
    )
    assert 'variables: {"greeting": "Say hello to Ada"}' in lines


def test_a_failed_run_prints_the_error_of_its_node_and_of_the_run() -> None:
    document = history("refused-401")
    lines = format_replay(replay_view(envelopes(document), rebuilt(document), summarize))
    assert "state after event 5: failed" in lines
    assert any(line.split()[:3] == ["ask", "failed", "invalid"] for line in lines)
    assert lines[-1].startswith('error: {"node": "ask", "class": "fatal"')


def test_ada_and_grace_diverge_first_at_greet_then_on_their_branches() -> None:
    ada, grace = history("hello-ada"), history("hello-grace")
    diff = diff_runs(
        envelopes(ada), run_state(rebuilt(ada)), envelopes(grace), run_state(rebuilt(grace))
    )
    assert diff["first_divergence"] == {"node": "greet", "differs": ["input", "output"]}
    assert diff["nodes"]["vip"]["differs"] == ["status", "output"]
    assert diff["nodes"]["greet"]["a"]["duration_ms"] is not None
    lines = format_diff(diff)
    assert lines[2] == "runs are different; first divergence at greet (input, output)"
    assert '      A: scripted:echo: "Say hello to Ada"' in lines
    assert "≠ regular: skipped / completed" in lines
    assert '  vars.tier: "vip" / "regular"' in lines


def test_an_agent_node_adds_up_the_tokens_of_all_its_turns() -> None:
    document = history("arithmetic-agent")
    diff = diff_runs(
        envelopes(document),
        run_state(rebuilt(document)),
        envelopes(document),
        run_state(rebuilt(document)),
    )
    solve = diff["nodes"]["solve"]
    assert solve["same"] is True
    assert solve["a"]["llm_calls"] == 2
    assert solve["a"]["tokens"]["input"] + solve["a"]["tokens"]["output"] == 25
    assert format_diff(diff)[2] == "runs are the same"


def test_an_export_of_the_stored_events_gives_back_the_same_history() -> None:
    document = history("hello-grace")
    assert export_history(envelopes(document)) == document


def test_an_imported_history_is_a_new_run_of_the_importing_tenant(app: Any) -> None:
    document = history("hello-ada")
    new_id = uuid.uuid4()
    run = import_history(document, app, new_id, tenant="team-b")
    again = run_state(app.repository.get(new_id))
    assert again == run_state(run)
    assert (again["run_id"], again["tenant"]) == (str(new_id), "team-b")
    assert again["status"] == "completed"
    with pytest.raises(RunExists):
        import_history(document, app, new_id)


def test_an_unfinished_run_is_not_imported_since_workers_would_carry_it_on(app: Any) -> None:
    document = history("hello-ada")
    document["events"] = document["events"][:3]
    document["status"] = "running"
    with pytest.raises(HistoryInvalid, match="only finished runs can be imported"):
        import_history(document, app, uuid.uuid4())
    assert import_history(document, app, uuid.uuid4(), allow_unfinished=True).version == 3


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (lambda d: d.update(format="heddle.run-history/0"), "not a run history: format is"),
        (lambda d: d.update(events=[]), "the history has no events"),
        (lambda d: d["events"].pop(2), r"event 3 \(WorkflowRun.NodeCompleted\): version is 4"),
        (
            lambda d: d["events"][1].update(type="WorkflowRun.Exploded"),
            "not an event of WorkflowRun",
        ),
        (lambda d: d["events"][1].update(type="WorkflowRun.Started"), "starts with one"),
        (lambda d: d["events"][2]["data"].pop("result"), "missing 1 required positional"),
        (lambda d: d["events"][3]["data"].update(node_id="greeet"), r"event 4 .* does not apply"),
    ],
)
def test_a_history_that_does_not_replay_is_refused_with_the_event_and_the_problem(
    app: Any, breakage: Any, reason: str
) -> None:
    document = copy.deepcopy(history("hello-ada"))
    breakage(document)
    with pytest.raises(HistoryInvalid, match=reason):
        import_history(document, app, uuid.uuid4())
