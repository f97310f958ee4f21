"""`heddle keys create|list|revoke`: API keys, through the API (an admin key of the tenant)
or, with `--database`, straight in the database like `heddle migrate` does: for the first
key of a deployment, and for keys of any tenant (docs/security.md).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer

from api.cli.client import (
    AllOption,
    CursorOption,
    JsonOption,
    LimitOption,
    call,
    database_url,
    err,
    fail,
    listed,
    out,
    print_items,
    print_json,
)
from domain.commands import TENANT_PATTERN
from infra.keys import SCOPES, ApiKeys

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
T = TypeVar("T")
DatabaseOption = Annotated[
    bool,
    typer.Option(
        "--database",
        help="Work in the database (DATABASE_URL, or heddle up's) instead of through the API: "
        "needs no key, and reaches every tenant.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add `keys` to `app`."""
    app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option(help="read, write or admin; repeat for more")],
    tenant: Annotated[
        str | None,
        typer.Option(help="Default: the calling key's tenant (with --database: default)"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Recorded as the actor in events")] = None,
    role: Annotated[
        list[str] | None,
        typer.Option(help="A task role whose tasks the key may act on; repeat for more"),
    ] = None,
    expires: Annotated[
        datetime | None, typer.Option(help="When the key stops working (UTC)")
    ] = None,
    database: DatabaseOption = False,
    as_json: JsonOption = False,
) -> None:
    """Make a key. The key is printed once, alone on stdout: store it now."""
    if unknown := sorted(set(scope) - set(SCOPES)):
        fail(f"unknown scopes {', '.join(unknown)}: use {', '.join(SCOPES)}")
    if database:
        tenant = tenant or "default"
        if not re.match(TENANT_PATTERN, tenant):
            fail(f"--tenant {tenant!r}: letters, digits, '_', '.', '-' (64 at most)")
        key, secret = _on_database(
            lambda keys: keys.create(tenant, scope, name, expires, role or [])
        )
        made = {**key.described(), "key": secret}
    else:
        body = {
            "scopes": scope,
            "roles": role,
            "name": name,
            "tenant": tenant,
            "expires_at": expires.isoformat() if expires else None,
        }
        made = call("POST", "/v1/keys", json={k: v for k, v in body.items() if v})
    if as_json:
        print_json(made)
        return
    err.print(
        f"made key {made['id']} of tenant {made['tenant']} "
        f"({', '.join(made['scopes'])}); it is shown this once:"
    )
    out.print(made["key"], markup=False, highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(
    database: DatabaseOption = False,
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """List keys, oldest first, a page at a time (of the calling key's tenant; of every
    tenant, all at once, with --database)."""
    if database:
        items = [key.described() for key in _on_database(lambda keys: keys.list(None))]
    else:
        items = listed("heddle keys list", "/v1/keys", {"limit": limit}, cursor, every)
    if not as_json:
        items = [
            {**item, "scopes": ",".join(item["scopes"]), "roles": ",".join(item["roles"])}
            for item in items
        ]
    print_items(
        items,
        as_json,
        {
            "id": "id",
            "tenant": "tenant",
            "name": "name",
            "scopes": "scopes",
            "roles": "roles",
            "status": "status",
            "created at": "created_at",
            "expires at": "expires_at",
        },
    )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID")], database: DatabaseOption = False
) -> None:
    """Revoke a key: it is refused from the next request on."""
    if database:
        if _on_database(lambda keys: keys.revoke(None, key_id)) is None:
            fail(f"no key {key_id!r}")
    else:
        call("DELETE", f"/v1/keys/{key_id}")
    out.print(f"revoked key {key_id}")


def _on_database(work: Callable[[ApiKeys], Awaitable[T]]) -> T:
    """`work` on the keys in the database that `heddle migrate` would use."""
    import psycopg
    from psycopg_pool import AsyncConnectionPool

    from infra.migrations import migrate

    url = database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)

    async def run() -> Any:
        async with AsyncConnectionPool(url, min_size=1, max_size=1) as pool:
            return await work(ApiKeys(pool))

    return asyncio.run(run())  # type: ignore[no-any-return]
