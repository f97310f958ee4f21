"""Every route of `/openapi.json`, fed what a careless or hostile client sends: path
parameters, query parameters and JSON bodies made by hypothesis (any JSON, odd text,
huge numbers, deep nesting). An answer may refuse the input, but never with a 500, and
always as a problem (docs/errors.md)."""

from __future__ import annotations

import asyncio
import re
import warnings
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning

from tests.integration.helpers import problem_of
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)

STREAMING = re.compile(r"/stream$")
"""Routes that answer with an endless event stream: left out."""
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["", "0", "-1", "null", "00000000-0000-0000-0000-000000000000", "a" * 300])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=20,
)
BODIES = JSON | st.dictionaries(
    st.sampled_from(["workflow", "input", "payload", "type", "variables", "edits", "name",
                     "definition", "decision", "content", "entries", "all", "scopes"]),
    JSON, max_size=4,
)  # fmt: skip


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, methods in spec["paths"].items():
        if STREAMING.search(path):
            continue
        for method, operation in methods.items():
            found.append((method.upper(), path, operation))
    return found


async def test_no_route_answers_500_to_any_input(
    heddle: Any,
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    routes = operations(spec)
    assert len(routes) > 40, "every route is checked"
    loop = asyncio.get_running_loop()
    failures: list[str] = []

    @st.composite
    def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], Any]:
        method, path, operation = draw(st.sampled_from(routes))
        for name in re.findall(r"{(\w+)}", path):
            path = path.replace(f"{{{name}}}", quote(draw(TEXT), safe="") or "x")
        query = {
            p["name"]: draw(TEXT)
            for p in operation.get("parameters", [])
            if p.get("in") == "query" and draw(st.booleans())
        }
        body = draw(BODIES) if method in ("POST", "PUT", "PATCH") else None
        return method, path, query, body

    @settings(
        max_examples=400, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )  # fmt: skip
    @given(requests())
    def check(request: tuple[str, str, dict[str, Any], Any]) -> None:
        method, path, query, body = request
        kwargs: dict[str, Any] = {"params": query}
        if body is not None:
            kwargs["json"] = body
        sent = asyncio.run_coroutine_threadsafe(
            client.request(method, path, timeout=30, **kwargs), loop
        )
        answer = sent.result(timeout=60)
        if answer.status_code >= 500:
            failures.append(f"{method} {path} {query} {body!r:.200} -> {answer.status_code}")
        assert answer.status_code < 500, failures[-1]
        if answer.status_code >= 400:
            problem_of(answer, answer.status_code)

    with warnings.catch_warnings():
        # the app's threads use `random` (retry jitter) while hypothesis draws: not ours
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        await asyncio.to_thread(check)
