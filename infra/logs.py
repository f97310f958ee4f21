"""Structured logs: structlog renders every line, Heddle's own and the stdlib records of
FastStream, aiokafka and uvicorn alike, as JSON (`heddle serve`) or readable console lines
(`heddle up`); `HEDDLE_LOG_FORMAT=json|console` and `HEDDLE_LOG_LEVEL` override.

Context fields (`tenant`, `run_id`, `node_id`, `command_id`) are bound with `bound(...)`
where a role handles a message (contextvars: a task started there inherits them) and
appear on every line written meanwhile.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from structlog.contextvars import bound_contextvars

Format = Literal["json", "console"]


def configure(default_format: Format, default_level: str) -> None:
    """Send every log record to stderr through structlog, in the format and from the
    level that `HEDDLE_LOG_FORMAT` and `HEDDLE_LOG_LEVEL` say (else the defaults)."""
    chosen = os.environ.get("HEDDLE_LOG_FORMAT", default_format).strip().lower()
    if chosen not in ("json", "console"):
        raise ValueError(f"HEDDLE_LOG_FORMAT must be json or console, not {chosen!r}")
    level = os.environ.get("HEDDLE_LOG_LEVEL", default_level).strip().upper()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if chosen == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)  # never a frame's locals
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)  # uvicorn's own handlers would print a second line
        named.handlers.clear()
        named.propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` (those not None, as text) to every line logged in this context."""
    with bound_contextvars(**{k: str(v) for k, v in fields.items() if v is not None}):
        yield
