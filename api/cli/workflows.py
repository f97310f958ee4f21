"""`heddle workflows apply|list`: publish workflow definitions and list them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from api.cli.client import (
    AllOption,
    CursorOption,
    JsonOption,
    LimitOption,
    call,
    fail,
    listed,
    out,
    print_items,
    print_json,
)

workflows_app = typer.Typer(help="Publish and list workflow definitions.", no_args_is_help=True)


@workflows_app.command("apply")
def workflows_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    as_json: JsonOption = False,
) -> None:
    """Publish a workflow definition (YAML or JSON) as a new version."""
    try:
        document = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        fail(f"{file}: not valid YAML: {error}")
    if not isinstance(document, dict) or "name" not in document:
        fail(f"{file}: a definition is a mapping with a `name`")
    result = call("PUT", f"/v1/workflows/{document['name']}", json=document)
    if as_json:
        print_json(result)
    else:
        out.print(
            f"published {result['workflow']} v{result['version']} ({result['content_hash'][:19]})"
        )


@workflows_app.command("list")
def workflows_list(
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """List workflows and their latest versions, by name, a page at a time."""
    print_items(
        listed("heddle workflows list", "/v1/workflows", {"limit": limit}, cursor, every),
        as_json,
        {
            "name": "name",
            "version": "version",
            "published by": "published_by",
            "published at": "published_at",
        },
    )
