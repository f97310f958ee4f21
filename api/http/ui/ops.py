"""The operations page: how current the read models are (`GET /v1/projections`), the
tenant's open tasks, and for an admin key of the deployment's tenant (as `/metrics`: the
figures span tenants) this process's Prometheus metrics, the read-model gauges among
them, as tables. Refreshed while open."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import REGISTRY

from api.http.database import read
from api.http.dependencies import DEPLOYMENT_TENANT, Runtime
from api.http.projections import progress_view
from api.http.ui.pages import PageRoute, render, visitor
from api.http.ui.session import Visitor
from infra.watermark import ProgressReader
from projections import tasks

SHOWN = (
    "heddle_runs", "heddle_open_tasks", "heddle_waiting_timers", "heddle_projection_lag_events",
    "heddle_relay_lag_events", "heddle_commands", "heddle_model_calls",
    "heddle_model_call_seconds", "heddle_node_step_seconds", "heddle_model_tokens",
    "heddle_dead_letters", "heddle_model_calls_in_flight",
)  # fmt: skip
"""The metric families the page shows, in this order."""


def metric_tables() -> list[dict[str, Any]]:
    """Each shown family's samples: counters and gauges as they are, histograms as their
    count and mean (reads the read-model gauges' database: call off the event loop)."""
    families = {family.name: family for family in REGISTRY.collect()}
    tables = []
    for name in SHOWN:
        family = families.get(name)
        if family is None:
            continue
        rows: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            suffix = sample.name.removeprefix(family.name) or "value"
            if suffix in ("_bucket", "_created"):
                continue
            rows.setdefault(labels, {})[suffix.lstrip("_")] = sample.value
        shown = []
        for labels, values in sorted(rows.items()):
            if "count" in values:
                mean = values.get("sum", 0.0) / values["count"] if values["count"] else 0.0
                figures = f"{values['count']:g} observed, mean {mean * 1000:.1f} ms"
            else:
                figures = f"{values.get('value', values.get('total', 0.0)):g}"
            shown.append({"labels": ", ".join(f"{k}={v}" for k, v in labels), "value": figures})
        tables.append({"name": family.name, "help": family.documentation, "rows": shown})
    return tables


def routes(runtime: Runtime) -> APIRouter:
    """`/ui/ops` and its live part."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    async def context(you: Visitor) -> dict[str, Any]:
        async with ProgressReader(runtime) as reader:
            progress = progress_view(await reader.read())
        open_tasks = await read(runtime, tasks.work_queue, you.key.tenant, "open", {}, 500)
        operator = you.is_admin and you.key.tenant == DEPLOYMENT_TENANT
        return {
            "progress": progress,
            "open_tasks": len(open_tasks),
            "metrics": await asyncio.to_thread(metric_tables) if operator else None,
        }

    @router.get("/ui/ops", response_class=HTMLResponse)
    async def ops(request: Request, you: Visitor = Depends(visitor)) -> Response:
        return render(request, "ops.html", you, **await context(you))

    @router.get("/ui/ops/live", response_class=HTMLResponse)
    async def ops_live(request: Request, you: Visitor = Depends(visitor)) -> Response:
        return render(request, "_ops.html", you, **await context(you))

    return router
