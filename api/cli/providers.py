"""`heddle providers check`: one minimal real call to every provider configured in this
environment."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import typer

from api.cli.client import JsonOption, out, print_json

providers_app = typer.Typer(help="Check the LLM providers.", no_args_is_help=True)


@providers_app.command("check")
def providers_check(as_json: JsonOption = False) -> None:
    """Call every provider configured in this environment once (max_tokens=1); exit 1 if
    any fails. Set keys and base URLs as for the workers."""
    from infra.llm.router import ProviderRouter, ProviderSettings

    async def check() -> list[dict[str, Any]]:
        router = ProviderRouter(ProviderSettings.from_env(os.environ))
        try:
            return await router.check_all()
        finally:
            await router.aclose()

    reports = asyncio.run(check())
    if as_json:
        print_json(reports)
    else:
        for report in reports:
            mark = "[green]ok[/]    " if report["ok"] else "[red]failed[/]"
            line = f"{mark} {report['provider']}:{report['model']} {report['latency_ms']:.0f} ms"
            out.print(line + ("" if report["ok"] else f": {report['error']}"))
    if not all(report["ok"] for report in reports):
        raise typer.Exit(1)
