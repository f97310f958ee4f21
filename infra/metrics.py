"""Heddle's Prometheus metrics, all defined here, and how a process serves them.

The API serves them at `GET /metrics`; a process started with `--no-api` serves them on
`HEDDLE_METRICS_PORT` (api/cli/stack.py). They are observed at a few central places:
the retry layer (model calls), the intake role (commands), the writer (write batches),
the projector (node steps, as the read models record them), the Kafka glue and the
relay (dead letters, token pieces). Gauges of the read models, the relay and the
consumer groups' lag are read when scraped.
Labels are bounded: workflow, node kind, provider, model, tenant, command type, topic;
never a run id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from domain.commands import COMMAND_TYPES, CommandReceipt

log = logging.getLogger("heddle.metrics")
CONTENT_TYPE = CONTENT_TYPE_LATEST
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

NODE_STEP = Histogram(
    "heddle_node_step_seconds",
    "How long a node attempt ran, from started to completed or failed.",
    ["workflow", "kind", "status"],
    buckets=SECONDS,
)
MODEL_CALL = Histogram(
    "heddle_model_call_seconds",
    "How long a model call took, its retries included.",
    ["provider", "model"],
    buckets=SECONDS,
)
COMMAND_BATCH = Histogram(
    "heddle_command_batch_seconds", "How long the intake took to handle a batch of commands."
)
WRITE_BATCH = Histogram(
    "heddle_write_batch_seconds",
    "How long one decision and save took on the writer thread.",
    buckets=SECONDS,
)
COMMANDS = Counter(
    "heddle_commands_total",
    "Commands decided, by type, outcome and (for a rejection) the class of its reason.",
    ["type", "outcome", "reason"],
)
MODEL_CALLS = Counter(
    "heddle_model_calls_total",
    "Model calls, by outcome: ok, or the class of the error that ended them.",
    ["provider", "model", "outcome"],
)
MODEL_RETRIES = Counter(
    "heddle_model_call_retries_total",
    "Failed tries of a model call that were tried again.",
    ["provider", "model", "error_class"],
)
TOKENS = Counter(
    "heddle_model_tokens_total",
    "Tokens of the answered model calls.",
    ["provider", "model", "tenant", "direction"],
)
COST = Counter(
    "heddle_model_cost_usd_total",
    "Cost of the answered model calls, in US dollars (known prices only).",
    ["provider", "model", "tenant"],
)
DEAD_LETTERS = Counter(
    "heddle_dead_letters_total", "Records sent to a dead-letter topic.", ["topic"]
)
LOST_TOKEN_PIECES = Counter(
    "heddle_token_pieces_lost_total", "Streamed token pieces that were not delivered."
)
FIRST_TOKEN = Histogram(
    "heddle_model_first_token_seconds",
    "How long a streamed model call took to its first text (its retries included).",
    ["provider", "model"],
    buckets=SECONDS,
)
MODEL_CALLS_IN_FLIGHT = Gauge("heddle_model_calls_in_flight", "Model calls under way.")


@contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[None]:
    """Observe how long the block took (whether or not it raised)."""
    began = time.perf_counter()
    try:
        yield
    finally:
        (histogram.labels(**labels) if labels else histogram).observe(time.perf_counter() - began)


def count_commands(receipts: Iterable[CommandReceipt]) -> None:
    """Count decided commands by type (an unknown one as `other`), outcome and reason."""
    for receipt in receipts:
        known = receipt.type if receipt.type in COMMAND_TYPES else "other"
        COMMANDS.labels(type=known, outcome=receipt.outcome, reason=reason_class(receipt)).inc()


def reason_class(receipt: CommandReceipt) -> str:
    """Why a command was rejected, in a word: unreadable (no JSON object, or no tenant),
    unknown_type, invalid (its fields), refused (the rules said no); "" when accepted."""
    reason = receipt.reason or ""
    if receipt.outcome == "accepted":
        return ""
    if receipt.type == "?":
        return "unreadable"
    if reason.startswith("unknown command type"):
        return "unknown_type"
    if reason.startswith("invalid command"):
        return "invalid"
    return "refused"


def observe_node_steps(steps: Iterable[tuple[str, str, str, float]]) -> None:
    """(workflow, kind, status, seconds) of node attempts that just ended."""
    for workflow, kind, status, seconds in steps:
        NODE_STEP.labels(workflow=workflow, kind=kind, status=status).observe(max(0.0, seconds))


class ReadModelGauges(Collector):
    """Gauges read when scraped: runs by status, open tasks and waiting timers (from the
    read models), the projection lag (the store's head minus the position the slowest
    projection has applied) and the relay's lag (the store's head minus the relay's saved
    position)."""

    def __init__(self) -> None:
        self.database_url: str | None = None
        self.events_table = ""
        self.relay_lag: Callable[[], int] | None = None
        self.consumer_lag: Callable[[], Awaitable[dict[tuple[str, str], int]]] | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("heddle_runs", "Runs by status (read models).", labels=["status"]),
            GaugeMetricFamily("heddle_open_tasks", "Human tasks open (read models)."),
            GaugeMetricFamily("heddle_waiting_timers", "Timers not fired yet (read models)."),
            GaugeMetricFamily(
                "heddle_projection_lag_events",
                "Events in the store that the slowest projection has not applied yet.",
            ),
            GaugeMetricFamily(
                "heddle_relay_lag_events",
                "Events in the store that the relay has not saved as published yet.",
            ),
            GaugeMetricFamily(
                "heddle_consumer_lag_messages",
                "Messages a role's consumer group has not committed yet, by group and topic.",
                labels=["group", "topic"],
            ),
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs, tasks, timers, projection_lag, lag, consumers = self._families()
        if self.database_url is not None:
            try:
                with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                    for status, count in conn.execute(
                        "SELECT status, count(*) FROM runs GROUP BY status"
                    ):
                        runs.add_metric([status], count)
                    tasks.add_metric([], _count(conn, "tasks WHERE status = 'open'"))
                    timers.add_metric([], _count(conn, "timers WHERE status = 'pending'"))
                    row = conn.execute(
                        f"SELECT coalesce((SELECT max(notification_id) FROM {self.events_table}),"
                        " 0) - coalesce((SELECT min(position) FROM projection_positions"
                        " WHERE source = 'store'), 0)"
                    ).fetchone()
                    projection_lag.add_metric([], max(0, row[0] if row else 0))
            except psycopg.Error as error:
                log.warning("read-model gauges unavailable: %r", error)
            else:
                yield from (runs, tasks, timers, projection_lag)
        if self.relay_lag is not None:
            try:
                lag.add_metric([], self.relay_lag())
            except Exception as error:
                log.warning("relay lag unavailable: %r", error)
            yield lag
        if self.consumer_lag is not None:
            try:  # on the scraping thread: never the event loop's
                lags = asyncio.run(asyncio.wait_for(self.consumer_lag(), 5))
            except Exception as error:
                log.warning("consumer lag unavailable: %r", error)
            else:
                for (group, topic), behind in sorted(lags.items()):
                    consumers.add_metric([group, topic], behind)
                yield consumers


def _count(conn: psycopg.Connection[Any], rows: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {rows}").fetchone()
    return int(row[0]) if row else 0


GAUGES = ReadModelGauges()
REGISTRY.register(GAUGES)


def watch_read_models(database_url: str, events_table: str) -> None:
    """Report the read models' gauges of this database (whose store keeps its events in
    `events_table`) when scraped."""
    GAUGES.database_url, GAUGES.events_table = database_url, events_table


def watch_relay(lag: Callable[[], int]) -> None:
    """Report the relay's lag (`lag()`, when scraped)."""
    GAUGES.relay_lag = lag


def watch_consumer_lag(lag: Callable[[], Awaitable[dict[tuple[str, str], int]]]) -> None:
    """Report the consumer groups' lag (`await lag()`, when scraped)."""
    GAUGES.consumer_lag = lag


def exposition() -> bytes:
    """Every metric, in Prometheus' text format (reads the database: call off the loop)."""
    return generate_latest(REGISTRY)


def serve_metrics(port: int, host: str) -> Any:
    """Serve `/metrics` on `port` from a thread of its own (a `--no-api` process)."""
    server, _ = start_http_server(port, addr=host)
    log.info("serving metrics on http://%s:%d/metrics", host, port)
    return server
