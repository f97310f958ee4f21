"""Tracing with OpenTelemetry (`HEDDLE_TRACING=otlp`, with the `otel` extra installed:
`pip install 'heddle[otel]'`; off by default).

One trace follows a command from the API request through the intake, the store, the
relay, each worker step and model call, to the projector: the W3C `traceparent` travels
in Kafka headers and in each event's metadata (handlers/causes.py), so the steps of a run
that follow one another through the store stay in the trace of the request that started
it. The exporter is OTLP over HTTP, configured by the standard `OTEL_EXPORTER_OTLP_*`
variables; `OTEL_SERVICE_NAME` names the process (default `heddle`).

With tracing off, `span` makes no span but still hands the caller's `traceparent` on, so
events keep the trace id of the request that caused them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_CURRENT: ContextVar[str | None] = ContextVar("heddle_traceparent", default=None)
_tracer: Any = None


def configure(provider: Any | None) -> None:
    """Trace with this OpenTelemetry `TracerProvider` (None: stop tracing)."""
    global _tracer
    _tracer = provider.get_tracer("heddle") if provider is not None else None


def configure_from(mode: str) -> None:
    """Set up tracing as `HEDDLE_TRACING` says: `off`, or `otlp` (the `otel` extra)."""
    if mode != "otlp":
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise RuntimeError(
            "HEDDLE_TRACING=otlp needs OpenTelemetry: pip install 'heddle[otel]'"
        ) from error
    service = os.environ.get("OTEL_SERVICE_NAME", "heddle")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    configure(provider)


def current() -> str | None:
    """The `traceparent` of the work under way here (or the one it was called with)."""
    return _CURRENT.get()


@contextmanager
def span(name: str, parent: str | None = None, **attributes: Any) -> Iterator[str | None]:
    """A span named `name`, the child of `parent` (a `traceparent`; by default the
    current one); yields the `traceparent` that work inside it passes on."""
    parent = parent or _CURRENT.get()
    if _tracer is None:
        token = _CURRENT.set(parent)
        try:
            yield parent
        finally:
            _CURRENT.reset(token)
        return
    from opentelemetry.context import Context
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    context = propagator.extract({"traceparent": parent}) if parent else Context()
    kept = {key: value for key, value in attributes.items() if value is not None}
    with _tracer.start_as_current_span(name, context=context, attributes=kept) as made:
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context=set_span_in_context(made))
        token = _CURRENT.set(carrier.get("traceparent"))
        try:
            yield carrier.get("traceparent")
        finally:
            _CURRENT.reset(token)
