"""Timers, retries, timeouts, error handlers, deadlines, waits, signals, snooze, schedule
and skip, through the intake against the in-memory store. The timer role is not here:
these tests send the `FireTimer` command it would send when a timer is due."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.errors import NodeNotRunning
from handlers.unit_of_work import UnitOfWork
from tests.unit.test_forks import accepted, command
from tests.unit.test_people import answer, rejected, start


def fire(uow: UnitOfWork, run_id: uuid.UUID, timer: str) -> dict[str, Any]:
    return accepted(uow, "FireTimer", {"run_id": str(run_id), "timer": timer})


def pending(uow: UnitOfWork, run_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    return {t: v for t, v in uow.get(run_id).timers.items() if v["status"] == "pending"}


def seconds_until(at: str) -> float:
    return (datetime.fromisoformat(at) - datetime.now(UTC)).total_seconds()


WAIT = {
    "name": "wait",
    "start": "pause",
    "nodes": {
        "pause": {"kind": "wait", "for": "10m", "output": "woke", "next": "done"},
        "done": {"kind": "set", "vars": {"done": True}},
    },
}


def test_a_wait_sets_a_durable_timer_and_goes_on_when_it_fires_once(uow) -> None:
    run_id = start(uow, WAIT)
    timers = pending(uow, run_id)
    assert list(timers) == ["wait:pause:1"]
    assert 590 < seconds_until(timers["wait:pause:1"]["fire_at"]) <= 600
    assert fire(uow, run_id, "wait:pause:1")["fired"] is True
    run = uow.get(run_id)
    assert run.status == "completed"
    assert run.variables["done"] is True
    assert run.variables["woke"] == {"fired_at": timers["wait:pause:1"]["fire_at"]}
    assert fire(uow, run_id, "wait:pause:1")["fired"] is False


FLAKY = {
    "name": "flaky",
    "start": "ask",
    "nodes": {
        "ask": {
            "kind": "llm",
            "model": "scripted:echo",
            "prompt": "hi",
            "output": "a",
            "retry": {"attempts": 3, "backoff": "2s", "errors": ["fatal"]},
        },
    },
}


def fail(
    uow: UnitOfWork, run_id: uuid.UUID, node_id: str, attempt: int, kind: str = "fatal"
) -> None:
    uow.get(run_id).fail_node(
        node_id, attempt, {"class": kind, "message": "401 bad key"}, now=datetime.now(UTC)
    )
    uow.save()


def test_a_node_retries_after_its_backoff_and_fails_the_run_when_attempts_run_out(uow) -> None:
    run_id = start(uow, FLAKY)
    fail(uow, run_id, "ask", 1)
    run = uow.get(run_id)
    assert run.status == "running"
    assert run.nodes["ask"]["status"] == "retrying"
    assert 1 < seconds_until(pending(uow, run_id)["retry:ask:1"]["fire_at"]) <= 2
    fire(uow, run_id, "retry:ask:1")
    assert uow.get(run_id).nodes["ask"] == {
        **uow.get(run_id).nodes["ask"],
        "status": "running",
        "attempt": 2,
    }
    fail(uow, run_id, "ask", 2)
    assert 3 < seconds_until(pending(uow, run_id)["retry:ask:2"]["fire_at"]) <= 4  # 2s * 2
    fire(uow, run_id, "retry:ask:2")
    fail(uow, run_id, "ask", 3)
    run = uow.get(run_id)
    assert run.status == "failed"
    assert run.error["message"] == "401 bad key"


def test_an_error_of_a_class_the_retry_does_not_cover_fails_at_once(uow) -> None:
    run_id = start(uow, FLAKY)
    fail(uow, run_id, "ask", 1, kind="definition")
    assert uow.get(run_id).status == "failed"


GUARDED = {
    "name": "guarded",
    "start": "ask",
    "nodes": {
        "ask": {
            "kind": "llm",
            "model": "scripted:echo",
            "prompt": "hi",
            "output": "a",
            "timeout": "30s",
            "on_error": "apologise",
            "next": "thank",
        },
        "thank": {"kind": "set", "vars": {"path": "happy"}},
        "apologise": {"kind": "set", "vars": {"path": "{{ nodes.ask.error.message }}"}},
    },
}


def test_a_timeout_fails_the_node_and_its_error_handler_takes_over(uow) -> None:
    run_id = start(uow, GUARDED)
    assert 29 < seconds_until(pending(uow, run_id)["timeout:ask:1"]["fire_at"]) <= 30
    fire(uow, run_id, "timeout:ask:1")
    run = uow.get(run_id)
    assert run.status == "completed"
    assert run.variables == {"path": "node 'ask' took longer than its timeout of 30s"}
    assert run.nodes["thank"]["status"] == "skipped"
    with pytest.raises(NodeNotRunning):  # the late answer is dropped
        answer(uow, run_id, "ask")


def test_a_node_that_answers_in_time_takes_its_next_and_skips_the_handler(uow) -> None:
    run_id = start(uow, GUARDED)
    answer(uow, run_id, "ask")
    assert fire(uow, run_id, "timeout:ask:1")["fired"] is False
    run = uow.get(run_id)
    assert run.variables == {"a": "ASK", "path": "happy"}
    assert run.nodes["apologise"]["status"] == "skipped"


def test_a_run_past_its_deadline_fails_and_cancels_its_open_tasks(uow) -> None:
    definition = {
        **WAIT,
        "name": "late",
        "deadline": "1h",
        "nodes": {
            "ask": {"kind": "human", "title": "Anyone?", "next": "done"},
            "done": {"kind": "set", "vars": {"done": True}},
        },
        "start": "ask",
    }
    run_id = start(uow, definition)
    assert 3590 < seconds_until(pending(uow, run_id)["deadline"]["fire_at"]) <= 3600
    fire(uow, run_id, "deadline")
    run = uow.get(run_id)
    assert run.status == "failed"
    assert run.error == {"class": "deadline", "message": "the run passed its deadline of 1h"}
    assert run.tasks["ask"]["status"] == "cancelled"


EVENTFUL = {
    "name": "payment",
    "start": "await",
    "nodes": {
        "await": {
            "kind": "wait",
            "event": 'event.name == "paid" && event.data.amount >= 10',
            "timeout": "1d",
            "output": "payment",
        },
    },
}


def test_a_signal_that_matches_wakes_the_waiting_node_and_one_that_does_not_is_refused(uow) -> None:
    run_id = start(uow, EVENTFUL)
    reason = rejected(
        uow, "SignalRun", {"run_id": str(run_id), "name": "paid", "data": {"amount": 5}}
    )
    assert reason == f"no node of run {run_id} waits for this event (waiting: await)"
    result = accepted(
        uow, "SignalRun", {"run_id": str(run_id), "name": "paid", "data": {"amount": 12}}
    )
    assert result["nodes"] == ["await"]
    run = uow.get(run_id)
    assert run.status == "completed"
    assert run.variables["payment"] == {"name": "paid", "data": {"amount": 12}, "by": "ada"}


def test_a_snoozed_run_resumes_by_itself_and_a_scheduled_resume_waits_for_its_time(uow) -> None:
    run_id = start(uow, WAIT)
    accepted(uow, "PauseRun", {"run_id": str(run_id), "until": "2h"})
    snooze = next(t for t in pending(uow, run_id) if t.startswith("resume:"))
    assert 7190 < seconds_until(pending(uow, run_id)[snooze]["fire_at"]) <= 7200
    fire(uow, run_id, snooze)
    assert uow.get(run_id).status == "running"
    accepted(uow, "PauseRun", {"run_id": str(run_id)})
    at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    accepted(uow, "ResumeRun", {"run_id": str(run_id), "at": at.isoformat()})
    assert uow.get(run_id).status == "paused"
    scheduled = [t for t, v in pending(uow, run_id).items() if v["fire_at"] == at.isoformat()]
    fire(uow, run_id, scheduled[0])
    assert uow.get(run_id).status == "running"
    assert "neither an ISO 8601 time nor a duration" in rejected(
        uow, "PauseRun", {"run_id": str(run_id), "until": "tomorrow"}
    )


def test_a_skipped_step_completes_without_output_and_the_run_goes_on(uow) -> None:
    run_id = start(uow, WAIT)
    accepted(uow, "SkipNode", {"run_id": str(run_id), "node": "pause", "reason": "not needed"})
    run = uow.get(run_id)
    assert run.status == "completed"
    assert run.nodes["pause"]["output"] is None
    assert fire(uow, run_id, "wait:pause:1")["fired"] is False
    assert rejected(uow, "SkipNode", {"run_id": str(run_id), "node": "done"}) == (
        f"node 'done' of run {run_id} is not running (running: none)"
    )


def test_an_unknown_timer_changes_nothing(uow) -> None:
    run_id = start(uow, WAIT)
    version = uow.get(run_id).version
    assert (
        command(uow, "FireTimer", {"run_id": str(run_id), "timer": "nope"}).result["fired"] is False
    )
    assert uow.get(run_id).version == version
