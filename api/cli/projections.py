"""`heddle projections rebuild`: empty read models and rebuild them from the store, in the
database `heddle migrate` would use."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from api.cli.client import database_url, fail, out

projections_app = typer.Typer(help="Maintain read models.", no_args_is_help=True)


@projections_app.command("rebuild")
def projections_rebuild(
    names: Annotated[
        list[str] | None, typer.Argument(metavar="[NAME]...", help="default: every read model")
    ] = None,
) -> None:
    """Empty read models and rebuild them from every stored event, in one pass."""
    from infra.projector import PROJECTIONS, rebuild
    from infra.store import EventStore, store_environment

    chosen = names or list(PROJECTIONS)
    unknown = [name for name in chosen if name not in PROJECTIONS]
    if unknown:
        fail(f"unknown projection {unknown[0]!r} (known: {', '.join(PROJECTIONS)})")
    url = database_url()
    store = EventStore(env=store_environment(url, 0, create_tables=False))
    try:
        started = time.perf_counter()
        count = rebuild(url, store, *chosen)
        seconds = time.perf_counter() - started
    finally:
        store.close()
    out.print(f"rebuilt {', '.join(chosen)} from {count} events in {seconds:.2f} s")
