"""Which failures are an outage and which are a message's own.

An outage (PostgreSQL refusing or dropping connections, the pool finding none in time,
the broker unreachable or not answering) is waited out: the work is tried again, with a
capped backoff, for as long as the outage lasts, and it never counts towards the
dead-letter limit. Only a failure of a message's own (a bug, a payload nothing can
handle) is counted, and after `dlq_after_attempts` goes to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging

import eventsourcing.persistence as es
import psycopg
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    NoBrokersAvailable,
    NodeNotReadyError,
    RequestTimedOutError,
)

OUTAGES: tuple[type[BaseException], ...] = (
    KafkaConnectionError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    NoBrokersAvailable,
    NodeNotReadyError,
    RequestTimedOutError,
    ConnectionError,
    TimeoutError,
)
"""Outages by type. PostgreSQL's errors are told apart by their SQLSTATE (`_postgres`)."""
POSTGRES_OUTAGE_CLASSES = ("08", "53", "57")
"""Connection exceptions, insufficient resources (too many connections), operator
intervention (shutdown, restart, terminated backends, a database not accepting)."""
POSTGRES_OUTAGE_STATES = frozenset({"40001", "40P01", "55P03", "55000"})
"""Serialization failures, deadlocks and lock waits (a retry succeeds), and a database
that does not allow connections now (`ALLOW_CONNECTIONS false`)."""
BACKOFF_CAP_SECONDS = 5.0
log = logging.getLogger("heddle")


class Unavailable(Exception):
    """An outage found by Heddle itself (a wait that ran out), with what to tell the user."""

    def __init__(self, dependency: str, detail: str, **facts: str) -> None:
        super().__init__(detail)
        self.dependency, self.detail, self.facts = dependency, detail, facts


def is_outage(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is an outage of PostgreSQL or Kafka
    (not, say, a statement the database refuses for good: a row too large, a bad query)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error):
            return _postgres(current)
        if isinstance(current, (es.OperationalError, es.InterfaceError)):
            if not isinstance(current.__cause__, psycopg.Error):
                return True  # the library's own: no connection from its pool in time
        elif _kafka_or_own(current):
            return True
        current = current.__cause__
    return False


def _kafka_or_own(error: BaseException) -> bool:
    if isinstance(error, (Unavailable, *OUTAGES)):
        return True
    return isinstance(error, KafkaError) and bool(error.retriable)


def _postgres(error: psycopg.Error) -> bool:
    state = error.sqlstate
    if state is None:  # raised by the client: refused, dropped, the pool's wait ran out
        return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
    return state[:2] in POSTGRES_OUTAGE_CLASSES or state in POSTGRES_OUTAGE_STATES


def which(error: BaseException) -> str:
    """Which dependency an outage is of: `postgres` or `kafka`."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, Unavailable):
            return current.dependency
        if isinstance(current, (psycopg.Error, es.PersistenceError)):
            return "postgres"
        if isinstance(current, KafkaError):
            return "kafka"
        current = current.__cause__ or current.__context__
    return "postgres or kafka"


def backoff(attempt: int) -> float:
    """Seconds to wait before try `attempt` (1, 2, ...) after an outage: 0.2 s doubling,
    at most `BACKOFF_CAP_SECONDS`."""
    return min(0.2 * 2.0 ** max(attempt - 1, 0), BACKOFF_CAP_SECONDS)


class Outage:
    """One consumer's or loop's wait through an outage: each failed try waits longer
    (capped), and its start and its end are logged once, not every try."""

    def __init__(self, doing: str) -> None:
        self.doing = doing
        self.tries = 0

    async def wait(self, error: BaseException) -> None:
        self.tries += 1
        if self.tries == 1:
            log.warning("%s is unavailable (%r): %s again when it is back", which(error),
                        error, self.doing)  # fmt: skip
        await asyncio.sleep(backoff(self.tries))

    def over(self) -> None:
        if self.tries:
            log.warning("%s again after %d tries through an outage", self.doing, self.tries)
        self.tries = 0
