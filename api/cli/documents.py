"""`heddle documents upload FILE`: store a document (PDF or text) for `extract` nodes and
print its id (docs/workflows.md, `extract`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.client import JsonOption, call, out, print_json

documents_app = typer.Typer(help="Documents for extract nodes.", no_args_is_help=True)
CONTENT_TYPES = {
    ".pdf": "application/pdf",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".json": "application/json",
}


def register(app: typer.Typer) -> None:
    """Add `documents` to `app`."""
    app.add_typer(documents_app, name="documents")


@documents_app.command("upload")
def documents_upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    content_type: Annotated[
        str | None,
        typer.Option(
            help="Default: from the file's suffix (.pdf, .md, .csv, .json; text/plain otherwise)"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a document; prints the id to give an extract node's `document`."""
    kind = content_type or CONTENT_TYPES.get(file.suffix.lower(), "text/plain")
    result = call(
        "POST", "/v1/documents", content=file.read_bytes(), headers={"Content-Type": kind}
    )
    if as_json:
        print_json(result)
        return
    pages = f", {result['pages']} pages" if result["pages"] else ""
    size = f"{result['content_type']}, {result['size']} bytes{pages}"
    out.print(f"{result['document_id']}  ({size})")
