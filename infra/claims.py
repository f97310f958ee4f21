"""The claim check: large values of stored events are kept once, by content, and referenced.

An event whose stored JSON would be over `CLAIM_THRESHOLD` bytes has its large values
(run inputs, rendered prompts, model answers, tool results, transcripts: whatever field
holds them) moved to the `heddle_claims` table, keyed by the SHA-256 of their JSON, in
the same transaction as the event. The event keeps `null` in their place and lists them
in one more field of its own, `_claims_`: `[[path, sha256], ...]`, a path being the keys
and indexes that lead to the value. The same value in many events (an answer that is
also the node's output and the run's) is stored once. It happens where events are
serialised (`ClaimingMapper`), so domain code never sees a claim, and every message the
relay publishes stays small.

Claims are listed beside the event's fields, never inside them, so no value that came
from outside (an input, a model's answer, a tool's result) can pass for a claim and read
someone else's value. Aggregates read claims back transparently (`ClaimingMapper`);
envelopes read from the store resolve them (`EventStore.envelope`); consumers of
`heddle.events` resolve the records that list some (`EventStore.resolved`) before their
handlers see them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Composed, Identifier

CLAIM_THRESHOLD = 256 * 1024
"""An event's stored JSON over this many bytes has its largest values claimed until it
fits (so a message on `heddle.events` is at most about this large, under Kafka's 1 MiB)."""
CLAIMS_FIELD = "_claims_"
CLAIMS_MARK = b'"_claims_":'
"""How the field starts in compact JSON: records without it need no resolving."""
CLAIMS_TABLE = "heddle_claims"
CACHE_BYTES = 64 * 1024 * 1024
KEPT_FIELDS = frozenset({"timestamp", "originator_topic"})
"""Event fields never claimed (the relay reads them from the stored JSON)."""


class ClaimMissing(LookupError):
    """A claim's value is not in the claims table (it always is: it is written with the
    event that refers to it)."""


@dataclass(frozen=True)
class ClaimedEvent(StoredEvent):
    """A stored event, and the values it refers to, written in its transaction."""

    claims: dict[str, bytes] = field(default_factory=dict)


class Claims:
    """The claims table of one store: values by the SHA-256 of their JSON.

    Values never change, so recently read ones are cached (up to `CACHE_BYTES`).
    """

    def __init__(self, threshold: int = CLAIM_THRESHOLD) -> None:
        self.threshold = threshold
        self.datastore: PostgresDatastore | None = None
        """Set by the store once its recorder exists; without one (the in-memory store of
        unit tests) nothing is claimed."""
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()

    def get(self, sha256: str) -> bytes:
        """A claimed value's JSON."""
        with self._lock:
            if sha256 in self._cache:
                self._cache.move_to_end(sha256)
                return self._cache[sha256]
        assert self.datastore is not None, "claims are read only from a PostgreSQL store"
        query = SQL("SELECT value FROM {}.{} WHERE sha256 = %s").format(
            Identifier(self.datastore.schema), Identifier(CLAIMS_TABLE)
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, [sha256])
            row = curs.fetchone()
        if row is None:
            raise ClaimMissing(f"no claimed value {sha256}")
        value = bytes(row["value"])
        self._remember(sha256, value)
        return value

    def _remember(self, sha256: str, value: bytes) -> None:
        with self._lock:
            if sha256 in self._cache or len(value) > CACHE_BYTES // 4:
                return
            self._cache[sha256] = value
            self._cached_bytes += len(value)
            while self._cached_bytes > CACHE_BYTES:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= len(dropped)


def create_claims_statement(schema: str) -> Composed:
    return SQL(
        "CREATE TABLE IF NOT EXISTS {}.{} (sha256 text PRIMARY KEY, value bytea NOT NULL)"
    ).format(Identifier(schema), Identifier(CLAIMS_TABLE))


def insert_claims_statement(schema: str) -> Composed:
    """Inserts claims given as two arrays (SHA-256s, values); a value stored already stays."""
    return SQL(
        "INSERT INTO {}.{} (sha256, value) SELECT * FROM unnest(%s::text[], %s::bytea[])"
        " ON CONFLICT (sha256) DO NOTHING"
    ).format(Identifier(schema), Identifier(CLAIMS_TABLE))


class ClaimingMapper(Mapper[Any]):
    """Stores events as the library's mapper does, with large values claimed."""

    def __init__(self, transcoder: JSONTranscoder, claims: Claims) -> None:
        super().__init__(transcoder)
        self.claims = claims

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        stored = super().to_stored_event(domain_event)
        if self.claims.datastore is None or len(stored.state) <= self.claims.threshold:
            return stored
        state = dict(vars(domain_event))
        del state["originator_id"], state["originator_version"]
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        found = Found()
        state = self._fitted(state, found)
        return ClaimedEvent(
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=get_topic(type(domain_event)),
            state=self.transcoder.encode({**state, CLAIMS_FIELD: found.paths}),
            claims=found.values,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        domain_event = super().to_domain_event(stored_event)
        if CLAIMS_FIELD in domain_event.__dict__:
            put_claims(domain_event.__dict__, self._decoded)
        return domain_event

    def _decoded(self, sha256: str) -> Any:
        return self.transcoder.decode(self.claims.get(sha256))

    def _fitted(self, state: dict[str, Any], found: Found) -> dict[str, Any]:
        """The event's fields with large values claimed, then its largest fields claimed
        until the whole fits."""
        state = {
            k: v if k in KEPT_FIELDS else self._claimed(v, [k], found) for k, v in state.items()
        }
        sizes = sorted(
            ((len(self.transcoder.encode(v)), k) for k, v in state.items() if k not in KEPT_FIELDS),
            reverse=True,
        )
        for _, name in sizes:
            if len(self.transcoder.encode(state)) <= self.claims.threshold:
                break
            found.claim(self.transcoder.encode(state[name]), [name])
            state[name] = None
        return state

    def _claimed(self, value: Any, path: list[str | int], found: Found) -> Any:
        """`value`, or None and a claim of it when its JSON is over the threshold; a
        container's large parts are claimed first (so a long answer is one claim wherever
        it is; a container claimed after its parts keeps None in their places)."""
        encoded = self.transcoder.encode(value)
        if len(encoded) <= self.claims.threshold:
            return value
        if isinstance(value, dict):
            value = {k: self._claimed(v, [*path, _key(k)], found) for k, v in value.items()}
        elif isinstance(value, list | tuple):
            value = [self._claimed(v, [*path, i], found) for i, v in enumerate(value)]
        else:
            found.claim(encoded, path)
            return None
        encoded = self.transcoder.encode(value)
        if len(encoded) <= self.claims.threshold:
            return value
        found.claim(encoded, path)
        return None


@dataclass
class Found:
    """The claims of one event: where each value was, and the values by SHA-256."""

    paths: list[tuple[list[str | int], str]] = field(default_factory=list)
    values: dict[str, bytes] = field(default_factory=dict)

    def claim(self, encoded: bytes, path: list[str | int]) -> None:
        sha256 = hashlib.sha256(encoded).hexdigest()
        self.paths.append((path, sha256))
        self.values[sha256] = encoded


def _key(key: Any) -> str:
    """A key as JSON has it (an object's keys are strings)."""
    return key if isinstance(key, str) else json.dumps(key)


def put_claims(state: dict[str, Any], value_of: Callable[[str], Any]) -> dict[str, Any]:
    """Put each claimed value (`value_of` its SHA-256) back where it was, outer ones first
    (a container claimed whole holds None where its claimed parts go)."""
    for path, sha256 in sorted(state.pop(CLAIMS_FIELD), key=lambda claim: len(claim[0])):
        place = state
        for step in path[:-1]:
            place = place[step]
        place[path[-1]] = value_of(sha256)
    return state
