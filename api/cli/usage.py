"""`heddle runs attempts` and `heddle usage`: the `node_attempts` and `usage` read models
from the command line (through the routes of `api/http/runs.py` and `api/http/usage.py`),
every page of them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from api.cli.client import JsonOption, every_page, print_items, print_json


def register(app: typer.Typer, runs_app: typer.Typer) -> None:
    """Add `usage` to `app` and `attempts` to `runs_app`."""
    app.command("usage")(usage)
    runs_app.command("attempts")(runs_attempts)


def runs_attempts(
    run_id: str,
    node: Annotated[str | None, typer.Option(help="One node's attempts only")] = None,
    as_json: JsonOption = False,
) -> None:
    """What each node of a run did, attempt by attempt: model, tokens, cost, latency, error."""
    items = every_page(f"/v1/runs/{run_id}/attempts", {"node_id": node, "limit": 500})
    if as_json:
        print_json(items)
        return
    print_items(
        [_attempt_row(item) for item in items],
        False,
        {
            column: column
            for column in (
                "node",
                "attempt",
                "status",
                "model",
                "tokens",
                "cost",
                "latency",
                "error",
            )
        },
    )


def _attempt_row(attempt: dict[str, Any]) -> dict[str, Any]:
    """An attempt as a table row: `draft`, `titles[3]` for a map item, `plan step 2`."""
    where = attempt["node_id"]
    if attempt["item"] is not None:
        where += f"[{attempt['item']}]"
    if attempt["step"] is not None:
        where += f" step {attempt['step']}"
    usage = attempt["usage"] or {}
    cost = usage.get("cost_usd")
    return {
        "node": where,
        "attempt": attempt["attempt"],
        "status": attempt["status"],
        "model": f"{attempt['provider']}:{attempt['model']}" if attempt["model"] else "",
        "tokens": usage.get("input_tokens", 0) + usage.get("output_tokens", 0) if usage else "",
        "cost": "" if cost is None else f"${cost:.6f}",
        "latency": "" if attempt["latency_ms"] is None else f"{attempt['latency_ms']} ms",
        "error": (attempt["error"] or {}).get("message", "")[:80],
    }


def usage(
    by: Annotated[
        Literal["run", "workflow", "model", "day"] | None,
        typer.Option("--by", help="Group by run, workflow, model or day"),
    ] = None,
    since: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC)")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Last day, included")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow's runs")] = None,
    as_json: JsonOption = False,
) -> None:
    """Tokens, cost and model calls of your tenant: in all, or per run, workflow, model or day."""
    params = {"group_by": by, "from": since, "to": until, "workflow": workflow, "limit": 500}
    items = every_page("/v1/usage", params)
    group = {
        "run": ["run_id", "workflow"],
        "workflow": ["workflow"],
        "model": ["provider", "model"],
        "day": ["day"],
    }.get(by or "", [])
    for item in items:
        item["cost"] = f"${item['cost_usd']:.6f}" + ("" if item["cost_complete"] else " (at least)")
    print_items(
        items,
        as_json,
        {
            **{name: name for name in group},
            "runs": "runs",
            "model calls": "llm_calls",
            "in": "input_tokens",
            "cached": "cached_tokens",
            "out": "output_tokens",
            "cost": "cost",
        },
    )
