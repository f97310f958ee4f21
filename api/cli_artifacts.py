"""`heddle runs artifacts RUN_ID` and `heddle runs artifact ARTIFACT_ID`: the documents a
run saved, from the command line (through the routes of `api/artifacts.py`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_replay import JsonOption, _cli


def register(runs_app: typer.Typer) -> None:
    """Add `artifacts` and `artifact` to `runs_app`."""
    runs_app.command("artifacts")(runs_artifacts)
    runs_app.command("artifact")(runs_artifact)


def runs_artifacts(
    run_id: str,
    node: Annotated[str | None, typer.Option(help="Only the artifacts of this node")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the artifacts a run saved (its documents), oldest first."""
    cli = _cli()
    params: dict[str, Any] = {"limit": 500, **({"node_id": node} if node else {})}
    items: list[dict[str, Any]] = []
    while True:
        page = cli._call("GET", f"/v1/runs/{run_id}/artifacts", params=params)
        items += page["items"]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    cli._print_items(
        items,
        as_json,
        {
            "artifact": "artifact_id",
            "node": "node_id",
            "name": "name",
            "type": "content_type",
            "bytes": "size",
            "saved": "created_at",
        },
    )


def runs_artifact(
    artifact_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the content here")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print an artifact's content (or write it to --output; --json: with its metadata)."""
    cli = _cli()
    artifact = cli._call("GET", f"/v1/artifacts/{artifact_id}")
    if as_json:
        cli._print_json(artifact)
    elif output is not None:
        output.write_text(artifact["content"])
        cli.err.print(f"wrote {artifact['name']} ({artifact['size']} bytes) to {output}")
    else:
        sys.stdout.write(artifact["content"])
