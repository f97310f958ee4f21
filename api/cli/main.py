"""The `heddle` command: one typer app, with the commands of each group module added in
the order `heddle --help` lists them.

Read commands print tables for people, or JSON only on stdout with `--json`. Commands
that talk to a running Heddle use its API at `HEDDLE_API_URL` (default: the one
`heddle up` started), with the key in `HEDDLE_API_KEY` (default: `heddle up`'s admin key).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from api.cli import (
    artifacts,
    credentials,
    customers,
    dlq,
    documents,
    keys,
    projections,
    providers,
    replay,
    runs,
    schedules,
    server,
    tasks,
    threads,
    usage,
    workflows,
)
from api.cli.client import EXIT_CODES

app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown")


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"heddle {version('heddle')}")
        raise typer.Exit()


@app.callback(
    epilog="**Exit codes**: "
    + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
    + "; the reason is printed on stderr (README.md, The CLI)."
)
def heddle(
    _: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Heddle: durable, replayable LLM workflows."""


app.add_typer(workflows.workflows_app, name="workflows")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(projections.projections_app, name="projections")
app.add_typer(credentials.credentials_app, name="credentials")
app.add_typer(providers.providers_app, name="providers")
server.register(app)  # up, serve, migrate
runs.register(app)  # run
replay.register(app, runs.runs_app)  # replay, runs diff|export|import|fork|edit
tasks.register(app, runs.runs_app)  # tasks list|complete|reassign, runs pause|resume|cancel|set
usage.register(app, runs.runs_app)  # usage, runs attempts
threads.register(app)  # threads list|open|say|show|complete
keys.register(app)  # keys create|list|revoke
dlq.register(app)  # dlq list|show|replay
artifacts.register(runs.runs_app)  # runs artifacts|artifact
documents.register(app)  # documents upload
schedules.register(app)  # schedules create|list|show|pause|resume|delete
customers.register(app)  # customers import|list|show|context, playbooks publish|list, queue
