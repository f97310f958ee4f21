"""Every example in `examples/` runs to the outcome its comments promise, started the way
the README tells a user to: `heddle run NAME --follow` against `heddle up`."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.stack import HEDDLE, ROOT, Up

pytestmark = pytest.mark.e2e


def follow(up: Up, workflow: str, *inputs: str) -> dict[str, Any]:
    """`heddle run WORKFLOW --input ... --follow --json`: the run as it ended."""
    args = [arg for pair in inputs for arg in ("--input", pair)]
    done = up.cli("run", workflow, *args, "--follow", "--json")
    assert done.returncode == 0, f"heddle run {workflow} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_hello_greets_and_sorts_into_a_tier(stack: Up) -> None:
    run = follow(stack, "hello", "name=Ada")
    assert run["variables"]["greeting"] == "Say hello to Ada"
    assert run["variables"]["tier"] == "vip"


def test_fanout_collects_both_branches_in_order(stack: Up) -> None:
    run = follow(stack, "fanout", "topic=tea")
    assert run["variables"]["views"] == ["Pros of tea", "Cons of tea"]
    assert run["variables"]["summary"] == "Weigh Pros of tea against Cons of tea"


def test_map_over_50_chapters_returns_50_titles_in_order(stack: Up) -> None:
    chapters = [f"chapter about topic {n}" for n in range(50)]
    run = follow(stack, "titles", f"chapters={json.dumps(chapters)}")
    assert run["variables"]["titles"] == [
        f"Title {n + 1}: chapter about topic {n}" for n in range(50)
    ]


def test_tool_computes_the_invoice_total(stack: Up) -> None:
    run = follow(stack, "invoice", "quantity=3", "price=2.5")
    assert run["variables"]["total"] == 7.5
    assert run["variables"]["line"] == "The total is 7.5 EUR"


def test_actions_brief_a_renewal_and_save_the_brief_as_an_artifact(stack: Up) -> None:
    run = follow(stack, "renewal-brief", "customer=Acme", "arr=120000", "days_to_renewal=20")
    assert run["variables"]["urgent"] is True
    assert run["variables"]["risk"] == "low: Acme (120000 USD ARR) renews every year"
    assert run["variables"]["headline"] == "URGENT: Acme"
    listed = stack.cli("runs", "artifacts", run["run_id"], "--json")
    assert listed.returncode == 0, listed.stderr
    [artifact] = json.loads(listed.stdout)
    assert artifact["name"] == "brief-acme.md"
    shown = stack.cli("runs", "artifact", artifact["artifact_id"])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"# Renewal brief: Acme\n\n{run['variables']['brief']}"


def test_refund_approval_waits_for_heddle_tasks_complete(stack: Up) -> None:
    command = [str(HEDDLE), "run", "refund-approval", "--input", "customer=Ada",
               "--input", "amount=120", "--follow", "--json"]  # fmt: skip
    with subprocess.Popen(
        command, cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    ) as following:  # fmt: skip
        task = _open_task(stack, "support")
        assert following.poll() is None, "the run must wait for the person"
        done = stack.cli("tasks", "complete", task["run_id"], "review", "--approve",
                         "--comment", "loyal customer")  # fmt: skip
        assert done.returncode == 0, done.stderr
        stdout, stderr = following.communicate(timeout=60)
    assert following.returncode == 0, stderr
    run = json.loads(stdout)
    assert run["variables"]["verdict"]["decision"] == "approve"
    assert run["variables"]["outcome"] == "refunded"


def test_renewal_chat_talks_in_a_thread_until_heddle_threads_complete(stack: Up) -> None:
    started = stack.cli("run", "renewal-chat", "--input", "customer=Acme", "--input", "arr=120000",
                        "--json")  # fmt: skip
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    thread_id = _thread_of(stack, run_id)

    said = stack.cli("threads", "say", thread_id, "What should I offer?")
    system = "You help a CSM renew Acme renews at 120000 USD a year. Be brief."
    assert said.stdout == f"({system}) What should I offer?\n", said.stderr
    thanks = stack.cli("threads", "say", thread_id, "--branch", "thanks")
    assert thanks.stdout == "Anytime. Good luck with Acme!\n", thanks.stderr
    done = stack.cli("threads", "complete", thread_id, "--data", '{"outcome": "renewed"}')
    assert done.returncode == 0, done.stderr
    run = stack.wait_for_run(run_id)
    assert (run["status"], run["variables"]["outcome"]) == ("completed", "renewed")


def test_order_desk_answers_a_conversation_in_a_thread(stack: Up) -> None:
    opened = stack.cli("threads", "open", "--workflow", "order-desk")
    assert opened.returncode == 0, opened.stderr
    thread_id = opened.stdout.strip()
    first = stack.cli("threads", "say", thread_id, "I want tea")
    assert first.stdout == "How many of I want tea?\n", first.stderr
    second = stack.cli("threads", "say", thread_id, "two cups")
    assert second.stdout == "Ordered two cups of I want tea.\n", second.stderr


def _thread_of(up: Up, run_id: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = up.cli("threads", "list", "--run", run_id, "--json")
        assert listed.returncode == 0, listed.stderr
        if json.loads(listed.stdout):
            return str(json.loads(listed.stdout)[0]["thread_id"])
        time.sleep(0.2)
    raise AssertionError(f"no thread for run {run_id} after {timeout} s")


def _open_task(up: Up, role: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = up.cli("tasks", "list", "--role", role, "--json")
        assert listed.returncode == 0, listed.stderr
        tasks = [t for t in json.loads(listed.stdout) if t["status"] == "open"]
        if tasks:
            return tasks[0]  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"no open task for role {role} after {timeout} s")


def test_reminder_survives_a_restart_of_heddle_up_while_its_timer_waits(up: Up) -> None:
    up.start()
    started = up.cli("run", "reminder", "--input", "about=renew the domain", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    waiting = up.wait_for_run(run_id, until=("running",))
    while waiting["nodes"]["later"]["status"] != "running":
        time.sleep(0.1)
        waiting = up.wait_for_run(run_id, until=("running",))
    code, _ = up.interrupt()
    assert code == 0

    up.start()
    run = up.wait_for_run(run_id, timeout=90)
    assert run["status"] == "completed"
    assert run["variables"]["reminder"] == "Reminder: renew the domain"


def test_review_loop_drafts_twice_then_sends_the_validated_reply(stack: Up) -> None:
    run = follow(stack, "review-loop", "customer=Ada", "complaint=my parcel is late")
    assert run["output"]["verdict"] == "APPROVED"
    assert "we are sorry" in run["output"]["sent"]
    assert run["nodes"]["review"]["iterations"] == 2


def test_follow_up_checks_back_after_its_delay_and_closes_once_heddle_runs_set(
    stack: Up,
) -> None:
    started = stack.cli("run", "follow-up", "--input", "customer=Ada", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    waiting = stack.wait_for_run(run_id, until=("waiting",))
    while waiting["nodes"]["check_back"]["status"] != "completed":  # after its 2 s delay
        time.sleep(0.2)
        waiting = stack.wait_for_run(run_id, until=("waiting",))
    done = stack.cli("runs", "set", run_id, "resolved=true", "--reason", "customer confirmed")
    assert done.returncode == 0, done.stderr
    run = stack.wait_for_run(run_id)
    assert run["status"] == "completed"
    assert run["variables"]["status"] == "closed"


def test_the_agent_calls_the_calculator_then_answers_with_its_result(stack: Up) -> None:
    run = follow(stack, "order-agent", "question=What do 12 boxes at 4.50 EUR cost?")
    assert run["variables"]["reply"] == "12 boxes at 4.50 EUR come to 54 EUR."
    exported = stack.cli("runs", "export", run["run_id"])
    assert exported.returncode == 0, exported.stderr
    history = json.loads(exported.stdout)
    tools = [e["data"] for e in history["events"] if e["type"].endswith("ToolCallCompleted")]
    assert [(t["tool"], t["arguments"], t["content"]) for t in tools] == [
        ("calculator", {"expression": "12 * 4.5"}, "54")
    ]


def test_every_example_is_covered_here() -> None:
    names = {path.stem for path in (ROOT / "examples").glob("*.yaml")}
    covered = {"hello", "fanout", "map", "tool", "approval", "reminder", "subworkflow",
               "welcome", "extract", "chat", "conversation",  # welcome: as onboard's child
               "review-loop", "follow-up", "actions", "agent"}  # fmt: skip
    assert names <= covered, f"examples without an end-to-end test: {sorted(names - covered)}"


def test_subworkflow_runs_the_welcome_workflow_as_a_step(stack: Up) -> None:
    run = follow(stack, "onboard", "customer=Ada")
    assert run["variables"]["welcomed"] == {"message": "Welcome aboard, Ada!"}
    assert run["variables"]["note"] == "Sent: Welcome aboard, Ada!"


def test_extract_reads_the_uploaded_contract_and_reports_the_bad_field(stack: Up) -> None:
    uploaded = stack.cli("documents", "upload", "examples/contract.txt", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    document = json.loads(uploaded.stdout)
    run = follow(stack, "contract-terms", f"contract={document['document_id']}")
    terms = run["variables"]["terms"]
    assert terms["fields"] == {"customer": "Acme Corp", "annual_value": 48000}
    assert [field["field"] for field in terms["invalid"]] == ["renewal_date"]
    assert run["variables"]["status"] == "check renewal_date by hand"
