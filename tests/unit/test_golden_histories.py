"""Every run history kept in tests/golden/ rebuilds, with the current domain code, to the
state recorded next to it: a change that would break stored runs fails here.

To accept a deliberate change of state, see tests/golden/README.md (`--update`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from handlers.replay import HistoryInvalid
from tests.golden.update import expected_path, histories, name_of, rebuild_state

HISTORIES = histories()


@pytest.mark.parametrize("history", HISTORIES, ids=name_of)
def test_a_golden_history_rebuilds_to_its_expected_state(history: Path) -> None:
    expected = expected_path(history)
    assert expected.exists(), f"no {expected.name}: run python -m tests.golden.update --update"
    state = rebuild_state(json.loads(history.read_text()))
    assert state == json.loads(expected.read_text()), (
        f"{history.name} no longer rebuilds to {expected.name}: existing runs would change. "
        "If that is intended, regenerate with `python -m tests.golden.update --update "
        f"{name_of(history)}` and say why in the commit."
    )


def test_the_golden_histories_cover_completed_failed_and_agent_runs() -> None:
    documents = [json.loads(h.read_text()) for h in HISTORIES]
    assert {d["status"] for d in documents} >= {"completed", "failed"}
    types = {e["type"] for d in documents for e in d["events"]}
    assert {
        "WorkflowRun.AgentStepCompleted",
        "WorkflowRun.ToolCallCompleted",
        "WorkflowRun.NodesSkipped",
        "WorkflowRun.NodeFailed",
        "WorkflowRun.ChatReplyCompleted",
    } <= types


def test_a_history_whose_events_no_longer_fit_the_code_is_caught() -> None:
    history = json.loads((HISTORIES[0].parent / "hello-ada.history.json").read_text())
    renamed = copy.deepcopy(history)
    node_started = renamed["events"][1]
    node_started["data"]["node"] = node_started["data"].pop("node_id")
    with pytest.raises(HistoryInvalid, match=r"event 2 \(WorkflowRun.NodeStarted\)"):
        rebuild_state(renamed)
    changed = copy.deepcopy(history)
    changed["events"][3]["data"]["variables"] = {"greeting": "Hi"}
    assert rebuild_state(changed)["variables"] != rebuild_state(history)["variables"]
