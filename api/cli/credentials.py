"""`heddle credentials set|list|delete`: provider keys for nodes to name, stored
encrypted by a running Heddle (never shown again)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

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

credentials_app = typer.Typer(help="Store provider keys for nodes to name.", no_args_is_help=True)


@credentials_app.command("set")
def credentials_set(
    credential_id: Annotated[str, typer.Argument(metavar="ID", help="what nodes name")],
    provider: Annotated[str, typer.Option(help="openai, anthropic, groq or ollama")],
    as_json: JsonOption = False,
) -> None:
    """Store a provider key under ID; the key is read from stdin or a hidden prompt."""
    if sys.stdin.isatty():
        api_key = typer.prompt(f"{provider} API key for {credential_id}", hide_input=True)
    else:
        api_key = sys.stdin.read().strip()
    if not api_key:
        fail("no key given: pipe it in (`heddle credentials set ID --provider P < key.txt`)")
    stored = call(
        "PUT", f"/v1/credentials/{credential_id}", json={"provider": provider, "api_key": api_key}
    )
    if as_json:
        print_json(stored)
    else:
        out.print(f"stored credential {stored['id']} for {stored['provider']}")


@credentials_app.command("list")
def credentials_list(
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """List stored credentials by id (ids and providers; keys are never shown), a page at
    a time."""
    print_items(
        listed("heddle credentials list", "/v1/credentials", {"limit": limit}, cursor, every),
        as_json,
        {
            "id": "id",
            "provider": "provider",
            "created at": "created_at",
            "updated at": "updated_at",
        },
    )


@credentials_app.command("delete")
def credentials_delete(credential_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Delete a stored credential; nodes that name it fail until it is stored again."""
    call("DELETE", f"/v1/credentials/{credential_id}")
    out.print(f"deleted credential {credential_id}")
