"""The `heddle` CLI as a user meets it against `heddle up`: every list command's table
with items in it, the exit codes (README.md, "The CLI"), `heddle run` reporting a
rejection at once, pages of runs, and every command that a comment of `examples/` gives."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from infra.devstack import free_port
from tests.e2e.stack import HEDDLE, ROOT, Up

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
PLACEHOLDERS = {
    "RUN_ID": ("run", rf"run(?:_id)?\W+({UUID})"),
    "THREAD_ID": ("threads", rf"({UUID})"),
    "DOCUMENT_ID": ("documents", r"(doc_[\w-]+)"),
}
"""What a command in a comment names, the command that prints it, and how to read it."""
DOOMED = """\
name: doomed
start: ask
nodes:
  ask:
    kind: llm
    model: scripted:broken
    prompt: "hi"
    options: {fail: [{status: 400, message: "the model refused"}]}
"""


async def _poison(bootstrap: str) -> None:
    """A message on `heddle.events` that is no event: a dead letter soon."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("heddle.events", b"\x00 not an event")
    finally:
        await producer.stop()


def _ok(up: Up, *args: str) -> str:
    done = up.cli(*args)
    assert done.returncode == 0, f"heddle {shlex.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _run_id(up: Up, *args: str) -> str:
    return str(json.loads(_ok(up, "run", *args, "--json"))["run_id"])


def _eventually(up: Up, args: list[str], wanted: str, timeout: float = 60.0) -> str:
    """The output of `heddle ARGS` once it exits 0 with `wanted` in it."""
    deadline = time.monotonic() + timeout
    while True:
        done = up.cli(*args)
        if done.returncode == 0 and wanted in done.stdout:
            return done.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"heddle {shlex.join(args)} never showed {wanted}:\n{done}")
        time.sleep(0.3)


def test_every_list_command_prints_a_table_of_its_items(stack: Up, tmp_path: Path) -> None:
    hello = _run_id(stack, "hello", "--input", "name=Ada")
    waiting = _run_id(stack, "refund-approval", "--input", "customer=Ada", "--input", "amount=9")
    brief = _run_id(stack, "renewal-brief", "--input", "customer=Acme", "--input", "arr=5",
                    "--input", "days_to_renewal=20")  # fmt: skip
    chat = _run_id(stack, "renewal-chat", "--input", "customer=Acme", "--input", "arr=5")
    stack.wait_for_run(hello)
    stack.wait_for_run(brief)
    stored = subprocess.run(
        [str(HEDDLE), "credentials", "set", "team-openai", "--provider", "openai"],
        input="sk-test", cwd=ROOT, env=stack.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr

    assert "hello" in _ok(stack, "workflows", "list")
    assert hello in _ok(stack, "runs", "list")
    assert waiting in _eventually(stack, ["tasks", "list"], waiting)
    assert chat in _eventually(stack, ["threads", "list"], chat)
    assert "admin" in _ok(stack, "keys", "list")
    assert "team-openai" in _ok(stack, "credentials", "list")
    assert "hello" in _ok(stack, "usage", "--by", "workflow")
    assert "greet" in _ok(stack, "runs", "attempts", hello)
    assert "brief-acme.md" in _ok(stack, "runs", "artifacts", brief)


def test_a_rejected_run_exits_3_with_the_reason_at_once(stack: Up) -> None:
    missing = stack.cli("run", "nosuch", "--input", "a=1")
    assert missing.returncode == 3, missing
    assert "rejected" in missing.stderr
    assert "nosuch" in missing.stderr
    mismatched = stack.cli("run", "refund-approval", "--input", "amount=120")
    assert mismatched.returncode == 3, mismatched
    assert "'customer' is a required property" in mismatched.stderr
    started = json.loads(_ok(stack, "run", "hello", "--input", "name=Ada", "--json"))
    assert started["status"] == "accepted"
    unchecked = stack.cli("run", "nosuch", "--no-wait", "--json")
    assert unchecked.returncode == 0, unchecked.stderr
    assert json.loads(unchecked.stdout)["status"] == "pending"


def test_exit_codes_tell_usage_failed_run_and_unreachable_apart(stack: Up, tmp_path: Path) -> None:
    assert stack.cli("run").returncode == 2  # click's usage error
    (tmp_path / "doomed.yaml").write_text(DOOMED)
    _ok(stack, "workflows", "apply", str(tmp_path / "doomed.yaml"))
    failed = stack.cli("run", "doomed", "--follow")
    assert failed.returncode == 4, failed
    assert "the model refused" in failed.stdout
    nowhere = subprocess.run(
        [str(HEDDLE), "runs", "list"], cwd=ROOT, capture_output=True, text=True, check=False,
        env={**stack.env, "HEDDLE_API_URL": f"http://127.0.0.1:{free_port()}"},
    )  # fmt: skip
    assert nowhere.returncode == 5, nowhere
    assert "cannot reach Heddle" in nowhere.stderr
    assert "Exit codes" in _ok(stack, "--help")
    assert re.fullmatch(r"heddle \d+\.\d+\.\d+.*\n", _ok(stack, "--version"))


def test_runs_list_goes_a_page_at_a_time_or_all_at_once(stack: Up) -> None:
    started = {_run_id(stack, "welcome", "--input", f"name=N{n}") for n in range(3)}
    first = stack.cli("runs", "list", "--workflow", "welcome", "--limit", "2", "--json")
    assert first.returncode == 0, first.stderr
    cursor = re.search(r"--cursor (\S+)", first.stderr)
    assert cursor, first.stderr
    rest = _ok(stack, "runs", "list", "--workflow", "welcome", "--limit", "2",
               "--cursor", cursor.group(1), "--json")  # fmt: skip
    paged = [run["run_id"] for run in json.loads(first.stdout) + json.loads(rest)]
    every = _ok(stack, "runs", "list", "--workflow", "welcome", "--limit", "2", "--all", "--json")
    assert started <= set(paged) == {run["run_id"] for run in json.loads(every)}
    assert len(paged) == len(set(paged))


def test_every_list_command_goes_a_page_at_a_time_or_all_at_once(stack: Up) -> None:
    for n in range(2):
        run_id = _run_id(
            stack, "refund-approval", "--input", f"customer=P{n}", "--input", "amount=5"
        )
        _eventually(stack, ["tasks", "list", "--all"], run_id)
        _ok(stack, "keys", "create", "--scope", "read", "--name", f"pager-{n}")
        _ok(stack, "threads", "open", "--title", f"paged {n}")
        stored = subprocess.run(
            [str(HEDDLE), "credentials", "set", f"pager-{n}", "--provider", "openai"],
            input="sk-test", cwd=ROOT, env=stack.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert stored.returncode == 0, stored.stderr
    lists = {"workflows": "name", "tasks": "run_id", "keys": "id", "credentials": "id",
             "threads": "thread_id"}  # fmt: skip
    for noun, field in lists.items():
        every = json.loads(_ok(stack, noun, "list", "--limit", "1", "--all", "--json"))
        assert len(every) >= 2, noun
        paged: list[str] = []
        cursor: list[str] = []
        while True:
            page = stack.cli(noun, "list", "--limit", "1", *cursor, "--json")
            assert page.returncode == 0, page.stderr
            paged += [item[field] for item in json.loads(page.stdout)]
            more = re.search(rf"more: heddle {noun} list --cursor (\S+)", page.stderr)
            if not more:
                break
            cursor = ["--cursor", more.group(1)]
        assert paged == [item[field] for item in every], noun


def _commented_commands(path: Path) -> list[list[str]]:
    """The `heddle ...` commands on the comment lines of an example, as arguments."""
    comments = [line[1:].strip() for line in path.read_text().splitlines() if line[:1] == "#"]
    return [shlex.split(line, comments=True)[1:] for line in comments if line[:7] == "heddle "]


EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if _commented_commands(p))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_command_in_an_example_comment_works(stack: Up, example: Path) -> None:
    """Each command runs in order, with the ids that earlier commands printed (retried
    while what it acts on is still on its way, e.g. a task the run has not reached)."""
    ids: dict[str, str] = {}
    commands = _commented_commands(example)
    for at, written in enumerate(commands):
        args = [ids.get(arg, arg) for arg in written]
        unknown = [arg for arg in args if arg in PLACEHOLDERS]
        assert not unknown, f"{example.name}: no earlier command printed {unknown}"
        later = {arg for command in commands[at + 1 :] for arg in command}
        wanted = [
            name
            for name, (command, _) in PLACEHOLDERS.items()
            if command == args[0] and name in later and name not in ids
        ]
        deadline = time.monotonic() + 60
        while True:
            done = stack.cli(*args)
            found = {
                name: match.group(1)
                for name in wanted
                if (match := re.search(PLACEHOLDERS[name][1], done.stdout))
            }
            if done.returncode == 0 and len(found) == len(wanted):
                ids.update(found)
                break
            assert time.monotonic() < deadline, f"heddle {shlex.join(args)}: {done}"
            time.sleep(0.3)


def test_an_invalid_definition_prints_each_problem_at_its_path(stack: Up, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(DOOMED.replace("start: ask", "start: nowhere"))
    refused = stack.cli("workflows", "apply", str(tmp_path / "broken.yaml"))
    assert refused.returncode == 1, refused
    assert "error: 422: the definition is invalid" in refused.stderr
    assert re.search(r"^  start: .*nowhere", refused.stderr, re.MULTILINE), refused.stderr


def test_dlq_list_prints_a_table_of_dead_letters(stack: Up) -> None:
    """Last in the module: the poison message holds up its partition while it is retried."""
    asyncio.run(_poison(stack.bootstrap))
    assert "heddle.events:" in _eventually(stack, ["dlq", "list"], "heddle.events:")
