"""docs/reading.md stays true: the stream's messages, cursors and end, the projections'
answer and the wait headers are the ones the code produces."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from api.http.consistency import not_caught_up
from api.http.projections import progress_view
from api.http.streaming import CURSOR, parse_cursor
from api.http.streams import end_of
from domain.messages import TokenDelta
from infra.watermark import Progress
from tests.unit.test_docs import blocks

READING_MD = (Path(__file__).parents[2] / "docs" / "reading.md").read_text()
RUN_ID = uuid.UUID("0b6f3c2e-8a59-4f7e-9d43-2f1c6a7d5e10")


def sse_example() -> list[dict[str, str]]:
    body = next(b for _, b, mark in blocks(READING_MD) if mark == "sse-example")
    return [
        dict(line.split(": ", 1) for line in block.splitlines()) for block in body.split("\n\n")
    ]


def test_the_stream_example_uses_the_documented_messages_and_cursors() -> None:
    messages = sse_example()
    assert [m["event"] for m in messages][-1] == "end"
    assert {m["event"] for m in messages} == {"event", "token", "end"}
    cursors = [parse_cursor(m["id"]) for m in messages]
    assert all(CURSOR.match(m["id"]) for m in messages)
    assert cursors == sorted(cursors)
    for message in messages:
        assert f"| `{message['event']}` |" in READING_MD


def test_the_end_message_and_token_pieces_have_the_documented_fields() -> None:
    [end] = [json.loads(m["data"]) for m in sse_example() if m["event"] == "end"]
    completed = {"type": "WorkflowRun.Completed", "aggregate_version": 7, "position": 48}
    assert set(end_of(RUN_ID, completed)) == set(end)
    assert end_of(RUN_ID, completed)["status"] == end["status"] == "completed"
    for field in end:
        assert f"`{field}`" in READING_MD.split("| `end` |", 1)[1].split("\n", 1)[0]
    [token] = [m["data"] for m in sse_example() if m["event"] == "token"]
    shown = set(re.findall(r'"(\w+)":', token))
    assert shown == set(TokenDelta(RUN_ID, "greet", 1, 1, 1, 0, "x").as_message())


def test_the_projections_example_is_what_the_endpoint_answers_for_those_positions() -> None:
    shown = json.loads(
        next(b for _, b, mark in blocks(READING_MD) if mark == "projections-example")
    )
    applied = {p["name"]: p["position"] + 1 for p in shown["projections"]}  # applied beyond
    progress = Progress(newest=48, published=48, consistent=46, applied=applied)
    assert progress_view(progress) == shown
    for field in ("store_position", "published_position", "consistent_position"):
        assert f"| `{field}` |" in READING_MD


def test_the_wait_timeout_answer_is_quoted_as_heddle_gives_it() -> None:
    assert f"`{not_caught_up(40, 48, 5.0)}`" in READING_MD.replace("\n", " ")
