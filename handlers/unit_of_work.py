"""A unit of work: the aggregates one batch loads and changes, saved in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, TypeVar, overload
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording, Tracking

from handlers.causes import CAUSE, META, Cause

A = TypeVar("A", bound=Aggregate)
OnSaved = Callable[[list[Recording[UUID]]], None]
CONFLICT_ATTEMPTS = 3
"""How often `record` decides again after another writer changed an aggregate it saves."""
log = logging.getLogger("heddle")


class UnitOfWork:
    """Loads aggregates once per batch, collects changes, and saves them with positions.

    Aggregates come from the application's cache without copying, so a failed save must
    evict them: `save` does that, and so does `discard`. `on_saved` is told of what each
    save recorded (on the thread that saved).
    """

    def __init__(self, app: Application[UUID], on_saved: OnSaved | None = None) -> None:
        self.app = app
        self.on_saved = on_saved
        self._loaded: dict[UUID, Any] = {}

    @overload
    def get(self, aggregate_id: UUID, kind: type[A], at_least_version: int = 0) -> A | None: ...

    @overload
    def get(
        self, aggregate_id: UUID, kind: None = None, at_least_version: int = 0
    ) -> Aggregate | None: ...

    def get(
        self, aggregate_id: UUID, kind: type[Aggregate] | None = None, at_least_version: int = 0
    ) -> Aggregate | None:
        """The aggregate (None if there is none, or it is not a `kind`); reloads a cached
        copy older than `at_least_version`."""
        if aggregate_id in self._loaded:
            aggregate = self._loaded[aggregate_id]
        else:
            aggregate = self._load(aggregate_id)
            if aggregate is not None and aggregate.version < at_least_version:
                self._evict(aggregate_id)
                aggregate = self._load(aggregate_id)
            self._loaded[aggregate_id] = aggregate
        if kind is not None and not isinstance(aggregate, kind):
            return None
        return aggregate  # type: ignore[no-any-return]  # the repository's aggregates are untyped

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether any aggregate has this id (a new one must not take it)."""
        return self.get(aggregate_id) is not None

    def add(self, aggregate: Aggregate) -> None:
        self._loaded[aggregate.id] = aggregate

    def discard(self, aggregate_id: UUID) -> None:
        """Forget an aggregate whose changes must not be saved."""
        self._loaded.pop(aggregate_id, None)
        self._evict(aggregate_id)

    def changed(self) -> list[Aggregate]:
        return [a for a in self._loaded.values() if a is not None and a.pending_events]

    def stamp(self, cause: Cause | None) -> None:
        """Mark the pending events that have no cause yet as caused by `cause` (call it
        after each decision of a write that decides for several causes)."""
        if cause is None:
            return
        metadata = cause.metadata()
        for aggregate in self.changed():
            for pending in aggregate.pending_events:
                if META not in vars(pending):
                    object.__setattr__(pending, META, metadata)

    def save(self, trackings: Sequence[Tracking] = ()) -> int:
        """Save every changed aggregate and the positions in one transaction (events with
        no cause yet take the current context's)."""
        self.stamp(CAUSE.get())
        changed = self.changed()
        recordings: list[Recording[UUID]] = []
        try:
            if changed or trackings:
                recordings = self.app.save(*changed, trackings=list(trackings))
        except BaseException:
            for aggregate in changed:
                self._evict(aggregate.id)
            raise
        finally:
            self._loaded.clear()
        if self.on_saved is not None and recordings:
            self.on_saved(recordings)
        return len(changed)

    def _load(self, aggregate_id: UUID) -> Any:
        try:
            return self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _evict(self, aggregate_id: UUID) -> None:
        cache = self.app.repository.cache
        if cache is not None:
            with suppress(KeyError):
                cache.get(aggregate_id, evict=True)


def decide_and_save(
    decide: Callable[[UnitOfWork], None],
    first: UnitOfWork,
    fresh: Callable[[], UnitOfWork],
    trackings: Sequence[Tracking] = (),
) -> None:
    """Apply `decide` (outcomes already in hand: model answers, tool results) and save it
    with `trackings`. When another writer changed one of the aggregates meanwhile (a version
    conflict: a person's edit or signal landing while a model answered), decide again on
    their stored state: the outcomes are recorded again, never made again, and no other
    run of the batch repeats anything."""
    uow = first
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        decide(uow)
        try:
            uow.save(trackings)
            return
        except IntegrityError:
            if attempt == CONFLICT_ATTEMPTS:
                raise
            log.info("an aggregate changed while its outcome was made: deciding again")
            uow = fresh()  # the failed save evicted what it held: this one loads anew
