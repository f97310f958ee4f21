"""`heddle projections rebuild`: empty read models and rebuild them from the store, in the
database `heddle migrate` would use, with a progress bar on stderr when it is a terminal."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from api.cli.client import database_url, err, fail, out

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
    bar = Progress(
        TextColumn("rebuilding"), BarColumn(), MofNCompleteColumn(), TextColumn("positions"),
        TimeRemainingColumn(), console=err, disable=not err.is_terminal, transient=True,
    )  # fmt: skip
    task = bar.add_task("rebuild", total=None)
    try:
        started = time.perf_counter()
        with bar:
            count = rebuild(
                url, store, *chosen,
                progress=lambda position, last: bar.update(task, completed=position, total=last),
            )  # fmt: skip
        seconds = time.perf_counter() - started
    finally:
        store.close()
    out.print(f"rebuilt {', '.join(chosen)} from {count} events in {seconds:.2f} s")
