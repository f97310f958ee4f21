"""`heddle runs artifacts RUN_ID` and `heddle runs artifact ARTIFACT_ID`: the documents a
run saved, from the command line (through the routes of `api/http/artifacts.py`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.client import JsonOption, call, err, every_page, print_items, print_json


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
    path = f"/v1/runs/{run_id}/artifacts"
    items = every_page(path, {"node_id": node, "limit": 500})
    print_items(
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
    artifact = call("GET", f"/v1/artifacts/{artifact_id}")
    if as_json:
        print_json(artifact)
    elif output is not None:
        output.write_text(artifact["content"])
        err.print(f"wrote {artifact['name']} ({artifact['size']} bytes) to {output}")
    else:
        sys.stdout.write(artifact["content"])
