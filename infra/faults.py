"""Which failures are an outage and which are a message's own.

An outage (PostgreSQL refusing or dropping connections, the pool finding none in time,
the broker unreachable or not answering) is waited out: the work is tried again, with a
capped backoff, for as long as the outage lasts, and it never counts towards the
dead-letter limit. Only a failure of a message's own (a bug, a payload nothing can
handle) is counted, and after `dlq_after_attempts` goes to the dead-letter topic.
"""

from __future__ import annotations

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
    psycopg.OperationalError,  # refused, dropped, the pool's wait (PoolTimeout), lock waits
    psycopg.InterfaceError,
    es.OperationalError,  # the library's wrapping of the same
    es.InterfaceError,
    KafkaConnectionError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    NoBrokersAvailable,
    NodeNotReadyError,
    RequestTimedOutError,
    ConnectionError,
    TimeoutError,
)
BACKOFF_CAP_SECONDS = 5.0


class Unavailable(Exception):
    """An outage found by Heddle itself (a wait that ran out), with what to tell the user."""

    def __init__(self, dependency: str, detail: str, **facts: str) -> None:
        super().__init__(detail)
        self.dependency, self.detail, self.facts = dependency, detail, facts


def is_outage(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is an outage of PostgreSQL or Kafka."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (Unavailable, *OUTAGES)):
            return True
        if isinstance(current, KafkaError) and current.retriable:
            return True
        current = current.__cause__ or current.__context__
    return False


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
