"""What deciding a command takes from outside the command itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class Context:
    """The time a command is decided at (the domain has no clock) and the deployment's
    rules: the hosts HTTP tools may call, checked when a definition is published and
    when a run's graph is edited."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    allowed_hosts: frozenset[str] = frozenset()
