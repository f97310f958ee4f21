"""`heddle credentials set|list|delete`: provider keys for nodes to name, stored
encrypted by a running Heddle (never shown again)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from api.cli.client import JsonOption, call, fail, out, print_items, print_json

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
def credentials_list(as_json: JsonOption = False) -> None:
    """List stored credentials (ids and providers; keys are never shown)."""
    print_items(
        call("GET", "/v1/credentials")["items"],
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
