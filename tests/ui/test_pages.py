"""The web UI in a real Chromium against a real `heddle up`: what a person signing in
with a key sees and can do."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.stack import Up
from tests.ui.conftest import admin_key, new_key, shot, sign_in, start

pytestmark = pytest.mark.e2e


def test_a_key_signs_in_once_into_a_cookie_no_script_can_read_and_signing_out_ends_it(
    stack: Up, context: BrowserContext, page: Page
) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    shot(page, "sign-in")
    page.get_by_label("API key").fill("heddle_000000000000_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid API key")

    sign_in(page, admin_key(stack))
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    [session] = [c for c in context.cookies() if c["name"] == "heddle_ui"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    assert admin_key(stack) not in session["value"]
    assert page.evaluate("document.cookie") == ""
    assert admin_key(stack) not in page.content()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto("/ui/runs")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=%2Fui%2Fruns"))


def test_hello_started_from_its_form_completes_on_its_page_without_a_reload(
    stack: Up, page: Page
) -> None:
    sign_in(page, admin_key(stack))
    shot(page, "runs")
    page.get_by_role("link", name="Start a run").first.click()
    page.get_by_label("Workflow", exact=True).select_option("hello")
    expect(page.get_by_role("button", name="Start hello")).to_be_visible()
    page.get_by_role("button", name="Start hello").click()
    expect(page.locator("#err-name")).to_have_text("required")
    shot(page, "start-form")

    page.get_by_role("textbox", name=re.compile("^name")).fill("Ada")
    page.get_by_role("button", name="Start hello").click()
    expect(page).to_have_url(re.compile(r"/ui/runs/[0-9a-f-]{36}\?command="))
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#run-status")).to_have_text("completed")
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#outcome")).to_contain_text("StartRun")
    expect(page.locator("#outcome")).to_contain_text("accepted")
    expect(page.locator(".facts")).to_contain_text('"tier": "vip"')
    expect(page.locator("svg .node-completed")).to_have_count(3)
    expect(page.locator("svg .node-skipped")).to_have_count(1)
    page.locator("#node-greet > summary").click()
    expect(page.locator("#node-greet")).to_contain_text("scripted:echo")
    expect(page.locator("#node-greet")).to_contain_text("Say hello to Ada")
    page.get_by_text("LlmCallCompleted").click()
    expect(page.locator(".timeline")).to_contain_text('"provider": "scripted"')
    shot(page, "run")

    page.get_by_text("NodeStarted · greet").click()
    page.get_by_role("link", name="The run as it stood after this event").first.click()
    expect(page.locator(".run-head")).to_contain_text("as it stood after event 2 of 10")
    expect(page.locator("svg .node-running")).to_have_count(1)
    expect(page.locator("svg .node-running")).to_contain_text("greet")

    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.locator("#run-rows")).to_contain_text("hello")


def test_the_operations_page_shows_each_read_models_lag_and_the_operator_the_metrics(
    stack: Up, page: Page
) -> None:
    sign_in(page, admin_key(stack))
    page.get_by_role("link", name="Operations").click()
    expect(page.locator("#ops")).to_contain_text("run_history")
    expect(page.locator("#ops")).to_contain_text("heddle_runs")
    expect(page.locator("#ops")).to_contain_text("heddle_commands")
    shot(page, "operations")


def test_a_waiting_run_is_paused_and_resumed_from_its_page(stack: Up, page: Page) -> None:
    run_id = start(stack, "refund-approval", customer="Ada", amount=120)
    sign_in(page, admin_key(stack))
    page.goto(f"/ui/runs/{run_id}")
    expect(page.locator("svg .node-running")).to_have_count(1)

    page.get_by_label("Reason to pause").fill("checking the customer")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#outcome")).to_contain_text("PauseRun")
    expect(page.locator("#outcome")).to_contain_text("accepted")
    expect(page.locator("#run-status")).to_have_text("paused")
    expect(page.locator(".timeline")).to_contain_text("checking the customer")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    shot(page, "run-paused")

    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#outcome")).to_contain_text("ResumeRun")
    expect(page.locator("#outcome")).to_contain_text("accepted")
    expect(page.locator("#run-status")).to_have_text("running")


def test_refund_approvals_task_is_approved_from_the_work_queue(stack: Up, page: Page) -> None:
    customer = f"Ada {uuid.uuid4().hex[:6]}"
    run_id = start(stack, "refund-approval", customer=customer, amount=120)
    stack.wait_for_run(run_id, until=("running",))
    sign_in(page, admin_key(stack))
    page.get_by_role("link", name="Work queue").click()
    task = page.locator("article.task", has_text=customer)
    expect(task).to_contain_text("role support")
    shot(page, "work-queue")
    task.get_by_label("Comment").fill("loyal customer")
    task.get_by_role("button", name="Approve").click()
    expect(page.locator("#outcome")).to_contain_text("CompleteTask")
    expect(page.locator("#outcome")).to_contain_text("accepted")
    expect(page.locator("article.task", has_text=customer)).to_have_count(0)

    assert stack.wait_for_run(run_id)["variables"]["outcome"] == "refunded"
    page.goto(f"/ui/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator(".timeline")).to_contain_text("loyal customer")


def test_a_read_key_sees_no_control_and_cannot_send_a_command(
    stack: Up, context: BrowserContext, page: Page
) -> None:
    run_id = start(stack, "refund-approval", customer="Grace", amount=50)
    stack.wait_for_run(run_id, until=("running",))
    sign_in(page, new_key(stack, "--scope", "read", "--name", "viewer"))
    expect(page.get_by_role("link", name="Start a run")).to_have_count(0)
    page.goto(f"/ui/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("running")
    expect(page.locator("main button")).to_have_count(0)
    expect(page.locator("main form")).to_have_count(0)
    page.goto("/ui/tasks")
    expect(page.locator("article.task", has_text="Grace")).to_be_visible()
    expect(page.locator("main button")).to_have_count(0)

    refused = page.goto("/ui/start")
    assert refused is not None
    assert refused.status == 403
    expect(page.get_by_role("alert")).to_contain_text("lacks the 'write' scope")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    answer = context.request.post(f"/ui/runs/{run_id}/cancel", form={"csrf": str(csrf)},
                                  max_redirects=0)  # fmt: skip
    assert answer.status == 403
    assert stack.wait_for_run(run_id, until=("running",))["status"] == "running"


def test_a_form_without_the_sessions_csrf_token_changes_nothing(
    stack: Up, context: BrowserContext, page: Page
) -> None:
    run_id = start(stack, "refund-approval", customer="Linus", amount=10)
    stack.wait_for_run(run_id, until=("running",))
    sign_in(page, admin_key(stack))
    answer = context.request.post(f"/ui/runs/{run_id}/cancel", form={"csrf": "forged"},
                                  max_redirects=0)  # fmt: skip
    assert answer.status == 403
    assert "expired" in answer.text()
    page.goto(f"/ui/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("running")


def test_another_tenants_run_is_a_404_page(stack: Up, context: BrowserContext, page: Page) -> None:
    run_id = start(stack, "hello", name="Ada")
    stack.wait_for_run(run_id)
    other = new_key(stack, "--database", "--tenant", "acme", "--scope", "read", "--scope", "write")
    sign_in(page, other)
    expect(page.locator("#run-rows")).not_to_contain_text(run_id[:8])
    for path in (f"/ui/runs/{run_id}", f"/ui/runs/{run_id}?at=1", f"/ui/runs/{run_id}/live"):
        shown = page.goto(path)
        assert shown is not None
        assert shown.status == 404
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text(f"no run {run_id}")
    stream = context.request.get(f"/ui/runs/{run_id}/stream")
    assert stream.status == 404
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    answer = context.request.post(f"/ui/runs/{run_id}/cancel", form={"csrf": str(csrf)},
                                  max_redirects=0)  # fmt: skip
    assert answer.status == 404
    assert stack.wait_for_run(run_id)["status"] == "completed"


def test_the_runs_list_shows_a_run_started_elsewhere_without_a_reload(
    stack: Up, page: Page
) -> None:
    sign_in(page, admin_key(stack))
    page.get_by_label("Workflow", exact=True).select_option("refund-approval")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"workflow=refund-approval"))
    page.evaluate("window.notReloaded = true")
    run_id = start(stack, "refund-approval", customer="Eve", amount=5)
    expect(page.locator("#run-rows")).to_contain_text(run_id[:8], timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#run-rows")).not_to_contain_text("hello")


def thread_of(stack: Up, run_id: str) -> str:
    """The id of the run's thread, once the read model has it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = httpx.get(f"{stack.api}/v1/threads", params={"run_id": run_id},
                          headers=stack.headers()).json()["items"]  # fmt: skip
        if found:
            thread_id: str = found[0]["thread_id"]
            return thread_id
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} opened no thread")


def test_a_chat_in_renewal_chat_replies_live_and_completing_it_finishes_the_run(
    stack: Up, page: Page
) -> None:
    run_id = start(stack, "renewal-chat", customer="Acme", arr=120000)
    thread_of(stack, run_id)
    sign_in(page, admin_key(stack))
    page.goto(f"/ui/runs/{run_id}")
    page.get_by_role("link", name="its threads").click()
    page.get_by_role("link", name="Renewal: Acme").click()
    chat = page.get_by_role("list", name="Messages")
    expect(chat).to_contain_text("Ready to talk about Acme's renewal.")

    page.get_by_label("Message", exact=True).fill("What should I offer?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#outcome")).to_contain_text("PostMessage")
    expect(page.locator("#outcome")).to_contain_text("accepted")
    expect(chat.locator(".bubble-user")).to_contain_text("What should I offer?")
    expect(chat.locator(".bubble-assistant").last).to_contain_text(
        "renews at 120000 USD a year. Be brief.) What should I offer?"
    )
    page.get_by_role("button", name="Thanks").click()
    expect(chat.locator(".bubble-assistant").last).to_contain_text("Anytime. Good luck with Acme!")
    shot(page, "thread")

    page.get_by_label("Data to keep with the thread (JSON)").fill('{"outcome": "renewed"}')
    page.get_by_role("button", name="Complete the thread").click()
    expect(page.locator("#thread-status")).to_have_text("completed")
    assert stack.wait_for_run(run_id)["variables"]["outcome"] == "renewed"


def test_a_completed_run_is_forked_from_a_node_with_a_new_prompt_and_compared(
    stack: Up, page: Page
) -> None:
    run_id = start(stack, "hello", name="Ada")
    assert stack.wait_for_run(run_id)["variables"]["tier"] == "vip"
    sign_in(page, admin_key(stack))
    page.goto(f"/ui/runs/{run_id}")
    page.locator("#node-greet > summary").click()
    page.get_by_text("Fork the run from greet").click()
    page.get_by_label("Prompt").fill("Say hello to Grace")
    page.get_by_role("button", name="Fork from greet").click()
    expect(page.locator("#outcome")).to_contain_text("ForkRun")
    expect(page.locator("#outcome")).to_contain_text("accepted")
    expect(page).not_to_have_url(re.compile(run_id))
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator(".facts")).to_contain_text('"tier": "regular"')
    expect(page.locator(".run-head")).to_contain_text(f"forked from {run_id[:8]} at greet")

    page.get_by_role("link", name="compare with it").click()
    expect(page.locator("#first-divergence")).to_have_text("they first differ at greet")
    expect(page.locator("tr.first")).to_contain_text("Say hello to Grace")
    shot(page, "diff")


def test_a_workflow_is_published_from_the_page_with_each_problem_at_its_path(
    stack: Up, page: Page
) -> None:
    sign_in(page, admin_key(stack))
    page.get_by_role("link", name="Workflows").click()
    expect(page.get_by_role("link", name="refund-approval")).to_be_visible()
    source = page.get_by_label("Definition")
    source.fill("name: greeter\nstart: greet\nnodes:\n  greet: {kind: llm, prompt: Hi}\n")
    page.get_by_role("button", name="Publish").click()
    problems = page.get_by_role("alert")
    expect(problems).to_contain_text("nodes.greet.model")
    expect(page.get_by_label("Definition")).to_have_value(re.compile("name: greeter"))

    page.get_by_label("Definition").fill(
        "name: greeter\nstart: greet\nnodes:\n"
        "  greet: {kind: llm, model: 'scripted:echo', prompt: Hi, next: done}\n"
        "  done: {kind: set, vars: {ok: true}}\n"
    )
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("heading", name="greeter v1")).to_be_visible()
    expect(page.locator("svg .node")).to_have_count(2)
    expect(page.locator("main")).to_contain_text("sha256:")
    shot(page, "workflow")


def test_the_runs_list_goes_a_page_at_a_time(stack: Up, page: Page) -> None:
    started = {start(stack, "titles", chapters=[]) for _ in range(26)}
    for run_id in started:
        stack.wait_for_run(run_id)
    sign_in(page, admin_key(stack))
    page.goto("/ui/runs?workflow=titles")
    rows = page.locator("#run-rows tr")
    expect(rows).to_have_count(25)
    first = set(rows.locator("a").all_inner_texts())
    page.get_by_role("link", name="Older runs →").click()
    expect(rows).to_have_count(1)
    last = set(rows.locator("a").all_inner_texts())
    assert first | last == {run_id[:8] for run_id in started}
    expect(page.get_by_role("link", name="Older runs →")).to_have_count(0)
    page.get_by_role("link", name="Newest").click()
    expect(rows).to_have_count(25)


def test_an_input_task_is_completed_from_the_form_made_from_its_schema(
    stack: Up, page: Page
) -> None:
    definition = {
        "start": "ask",
        "nodes": {
            "ask": {
                "kind": "human", "task": "input", "title": "How many seats?", "role": "sales",
                "form": {"type": "object", "required": ["seats"], "properties": {
                    "seats": {"type": "integer", "minimum": 1},
                    "plan": {"enum": ["basic", "pro"]},
                }},
                "output": "order",
            }
        },
    }  # fmt: skip
    published = httpx.put(f"{stack.api}/v1/workflows/seats", json=definition,
                          headers=stack.headers())  # fmt: skip
    assert published.status_code == 200, published.text
    run_id = start(stack, "seats")
    stack.wait_for_run(run_id, until=("running",))
    sign_in(page, admin_key(stack))
    page.goto("/ui/tasks")
    task = page.locator("article.task", has_text="How many seats?")
    task.get_by_label("seats").fill("0")
    task.get_by_role("button", name="Complete").click()
    expect(page.locator("#outcome")).to_contain_text("rejected")
    expect(page.locator("#outcome")).to_contain_text("minimum of 1")
    task.get_by_label("seats").fill("3")
    task.get_by_label("plan").select_option("pro")
    task.get_by_role("button", name="Complete").click()
    expect(page.locator("#outcome")).to_contain_text("accepted")
    assert stack.wait_for_run(run_id)["variables"]["order"] == {"seats": 3, "plan": "pro"}


def test_a_runs_child_runs_are_listed_from_its_page(stack: Up, page: Page) -> None:
    run_id = start(stack, "onboard", customer="Ada")
    stack.wait_for_run(run_id)
    sign_in(page, admin_key(stack))
    page.goto(f"/ui/runs/{run_id}")
    page.get_by_role("link", name="its child runs").click()
    rows = page.locator("#run-rows tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("welcome")
    expect(rows).to_contain_text(f"child of {run_id[:8]}")


def serious_violations(page: Page, axe: str) -> list[str]:
    """What axe-core finds of serious or critical impact on the page, with where."""
    page.evaluate(axe)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']}: {v['help']} ({', '.join(n['target'][0] for n in v['nodes'][:3])})"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_every_page_passes_axe_without_a_serious_violation(stack: Up, page: Page, axe: str) -> None:
    run_id = start(stack, "renewal-chat", customer="Acme", arr=1000)
    thread_id = thread_of(stack, run_id)
    sign_in(page, admin_key(stack))
    pages = [
        "/ui/runs", "/ui/start?workflow=refund-approval", f"/ui/runs/{run_id}", "/ui/tasks",
        "/ui/threads", f"/ui/threads/{thread_id}", "/ui/workflows", "/ui/workflows/hello",
        "/ui/ops", f"/ui/runs/diff?a={run_id}&b={run_id}", f"/ui/runs/{uuid.uuid4()}",
    ]  # fmt: skip
    found = {}
    for path in pages:
        page.goto(path)
        found[path] = serious_violations(page, axe)
    page.get_by_role("button", name="Sign out").click()
    found["/ui/sign-in"] = serious_violations(page, axe)
    assert {path: problems for path, problems in found.items() if problems} == {}
