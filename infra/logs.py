"""Structured logs: structlog renders every line, Heddle's own and the stdlib records of
FastStream, aiokafka and uvicorn alike, as JSON (`heddle serve`) or readable console lines
(`heddle up`); `HEDDLE_LOG_FORMAT=json|console` and `HEDDLE_LOG_LEVEL` override.

Context bound with structlog's contextvars (the worker binds `run_id` and `node_id` to the
task of each piece of work it starts) and a record's `extra` fields appear on the line.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal, cast

import structlog

Format = Literal["json", "console"]


def configure(default_format: Format, default_level: str) -> None:
    """Send every log record to stderr through structlog, in the format and from the
    level that `HEDDLE_LOG_FORMAT` and `HEDDLE_LOG_LEVEL` say (else the defaults)."""
    chosen = os.environ.get("HEDDLE_LOG_FORMAT", default_format).strip().lower()
    if chosen not in ("json", "console"):
        raise ValueError(f"HEDDLE_LOG_FORMAT must be json or console, not {chosen!r}")
    level = os.environ.get("HEDDLE_LOG_LEVEL", default_level).strip().upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(cast(Format, chosen), colors=sys.stderr.isatty()))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(
        processors=[*_shared(chosen), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _shared(chosen: str) -> list[Any]:
    """What every line gets, a structlog call's or a stdlib record's."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _without_colors,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if chosen == "json":
        shared.append(structlog.processors.format_exc_info)  # text: never a frame's locals
    return shared


def _without_colors(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Drop uvicorn's copy of its message with terminal colours."""
    event.pop("color_message", None)
    return event


def formatter(chosen: Format, colors: bool = False) -> logging.Formatter:
    """The formatter that renders a stdlib record (or a structlog call) as one line."""
    renderer: Any = structlog.processors.JSONRenderer()
    if chosen == "console":
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(chosen),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
