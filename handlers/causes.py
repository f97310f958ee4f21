"""Why an event was recorded: the correlation id of the request it serves, the command or
event that caused it, and the W3C `traceparent` of the work that recorded it.

A `Cause` is stamped on each event as it is saved (`UnitOfWork.stamp`, and `save` for the
cause of the current context) and comes back as the envelope's `metadata`. Intake stamps
a command's events with the command; the worker stamps what a piece of work records with
the event that called for it, keeping the correlation id, so every event of a run says
which request started it and which event led to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

META = "_meta"
"""The event attribute (and stored JSON key) that holds an event's metadata."""


@dataclass(frozen=True)
class Cause:
    causation_id: str
    """The command id or event id that this is the outcome of."""
    correlation_id: str
    """The caller's correlation id (or the id of the command that began it all)."""
    traceparent: str | None = None
    """The W3C trace context of the work that records the events (HEDDLE_TRACING)."""

    def metadata(self) -> dict[str, str]:
        found = {
            "causation_id": self.causation_id,
            "correlation_id": self.correlation_id,
            "traceparent": self.traceparent,
        }
        return {key: value for key, value in found.items() if value}

    @classmethod
    def of_command(
        cls, command_id: str, correlation_id: str | None, traceparent: str | None
    ) -> Cause:
        return cls(command_id, correlation_id or command_id, traceparent)

    @classmethod
    def of_event(cls, envelope: Mapping[str, Any]) -> Cause:
        """Work an event called for: caused by it, in its correlation and trace."""
        metadata = envelope.get("metadata") or {}
        correlation = metadata.get("correlation_id") or envelope["id"]
        return cls(envelope["id"], correlation, metadata.get("traceparent"))

    def traced(self, traceparent: str | None) -> Cause:
        return Cause(self.causation_id, self.correlation_id, traceparent or self.traceparent)


CAUSE: ContextVar[Cause | None] = ContextVar("heddle_cause", default=None)
"""The cause of what the current task records (copied into the writer's thread)."""


@contextmanager
def caused(cause: Cause | None) -> Iterator[None]:
    token = CAUSE.set(cause)
    try:
        yield
    finally:
        CAUSE.reset(token)
