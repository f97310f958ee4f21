"""A unit of work: the aggregates one batch loads and changes, saved in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking


class UnitOfWork:
    """Loads aggregates once per batch, collects changes, and saves them with positions.

    Aggregates come from the application's cache without copying, so a failed save must
    evict them: `save` does that, and so does `discard`.
    """

    def __init__(self, app: Application[UUID]) -> None:
        self.app = app
        self._loaded: dict[UUID, Any] = {}

    def get(self, aggregate_id: UUID, at_least_version: int = 0) -> Any:
        """The aggregate, or None; reloads a cached copy older than `at_least_version`."""
        if aggregate_id in self._loaded:
            return self._loaded[aggregate_id]
        aggregate = self._load(aggregate_id)
        if aggregate is not None and aggregate.version < at_least_version:
            self._evict(aggregate_id)
            aggregate = self._load(aggregate_id)
        self._loaded[aggregate_id] = aggregate
        return aggregate

    def add(self, aggregate: Aggregate) -> None:
        self._loaded[aggregate.id] = aggregate

    def discard(self, aggregate_id: UUID) -> None:
        """Forget an aggregate whose changes must not be saved."""
        self._loaded.pop(aggregate_id, None)
        self._evict(aggregate_id)

    def changed(self) -> list[Aggregate]:
        return [a for a in self._loaded.values() if a is not None and a.pending_events]

    def save(self, trackings: Sequence[Tracking] = ()) -> int:
        """Save every changed aggregate and the positions in one transaction."""
        changed = self.changed()
        try:
            if changed or trackings:
                self.app.save(*changed, trackings=list(trackings))
        except BaseException:
            for aggregate in changed:
                self._evict(aggregate.id)
            raise
        finally:
            self._loaded.clear()
        return sum(1 for _ in changed)

    def _load(self, aggregate_id: UUID) -> Any:
        try:
            return self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _evict(self, aggregate_id: UUID) -> None:
        cache = self.app.repository.cache
        if cache is not None:
            try:
                cache.get(aggregate_id, evict=True)
            except KeyError:
                pass
