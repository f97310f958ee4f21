"""What the CLI prints when the API (or a proxy in front of it) refuses: a problem's
`detail` and each problem at its path, or the start of any other body, never a
traceback (docs/errors.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api.cli.client import ERROR

PROBLEM = {
    "type": "about:blank", "title": "Unprocessable Entity", "status": 422,
    "detail": "the request is invalid: 2 problems", "instance": "/v1/runs",
    "problems": [
        {"path": "body.workflow", "message": "Field required"},
        {"path": "body.input", "message": "Input should be a valid dictionary"},
    ],
}  # fmt: skip
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/v1/runs": (422, "application/problem+json", json.dumps(PROBLEM).encode()),
    "/v1/workflows": (502, "text/html", b"<html><body>502 Bad Gateway</body></html>"),
}
"""What the fake API answers per path."""


class Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, kind, body = ANSWERS[self.path.split("?")[0]]
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def heddle(api: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "HEDDLE_API_URL": api, "HEDDLE_API_KEY": "k", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=environ, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_problem_prints_its_detail_and_each_problem_at_its_path(api: str) -> None:
    refused = heddle(api, "runs", "list")
    assert refused.returncode == ERROR
    assert refused.stderr.splitlines() == [
        "  body.workflow: Field required",
        "  body.input: Input should be a valid dictionary",
        "error: 422: the request is invalid: 2 problems",
    ]


def test_a_proxys_html_error_prints_its_start_not_a_traceback(api: str) -> None:
    refused = heddle(api, "workflows", "list")
    assert refused.returncode == ERROR
    assert refused.stderr == "error: 502: <html><body>502 Bad Gateway</body></html>\n"
