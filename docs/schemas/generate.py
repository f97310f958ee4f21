"""Regenerate the JSON Schemas of the command envelope and payloads from the models.

Run from the repository root: `.venv/bin/python docs/schemas/generate.py`.
`tests/unit/test_docs.py` fails when the committed files differ from what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict[str, dict[str, Any]]:
    """Each schema file's name and content, generated from the pydantic models now."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from domain.commands import (
        CancelRun,
        CompleteRemoteTask,
        CompleteRun,
        CompleteSubworkflow,
        CompleteTask,
        CompleteThread,
        ConfigureTenant,
        CreateSchedule,
        DeleteSchedule,
        EditGraph,
        FireSchedule,
        FireTimer,
        ForkRun,
        OpenThread,
        PauseRun,
        PauseSchedule,
        PostMessage,
        PublishWorkflow,
        ReassignTask,
        ResumeRun,
        ResumeSchedule,
        SetVariables,
        SignalRun,
        SkipNode,
        StartRun,
        StartSubworkflow,
    )
    from domain.customers import (
        EvaluateCustomer,
        RecordCustomerSignal,
        SnoozeQueueItem,
        UpdateCustomer,
        UpsertCustomer,
    )
    from domain.messages import CommandEnvelope
    from domain.playbooks import PublishPlaybook

    models = {
        "command-envelope.json": CommandEnvelope,
        "start-run.json": StartRun,
        "publish-workflow.json": PublishWorkflow,
        "fork-run.json": ForkRun,
        "edit-graph.json": EditGraph,
        "complete-task.json": CompleteTask,
        "reassign-task.json": ReassignTask,
        "pause-run.json": PauseRun,
        "resume-run.json": ResumeRun,
        "cancel-run.json": CancelRun,
        "complete-run.json": CompleteRun,
        "skip-node.json": SkipNode,
        "signal-run.json": SignalRun,
        "set-variables.json": SetVariables,
        "fire-timer.json": FireTimer,
        "complete-remote-task.json": CompleteRemoteTask,
        "start-subworkflow.json": StartSubworkflow,
        "complete-subworkflow.json": CompleteSubworkflow,
        "open-thread.json": OpenThread,
        "post-message.json": PostMessage,
        "complete-thread.json": CompleteThread,
        "configure-tenant.json": ConfigureTenant,
        "create-schedule.json": CreateSchedule,
        "pause-schedule.json": PauseSchedule,
        "resume-schedule.json": ResumeSchedule,
        "delete-schedule.json": DeleteSchedule,
        "fire-schedule.json": FireSchedule,
        "upsert-customer.json": UpsertCustomer,
        "update-customer.json": UpdateCustomer,
        "record-customer-signal.json": RecordCustomerSignal,
        "evaluate-customer.json": EvaluateCustomer,
        "snooze-queue-item.json": SnoozeQueueItem,
        "publish-playbook.json": PublishPlaybook,
    }
    return {name: {"$schema": DRAFT, **model.model_json_schema()} for name, model in models.items()}


def render(schema: dict[str, Any]) -> str:
    """The exact text committed for a schema."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    for name, schema in schemas().items():
        (HERE / name).write_text(render(schema))
        print(f"wrote docs/schemas/{name}")


if __name__ == "__main__":
    main()
