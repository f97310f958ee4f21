"""Readiness checks that talk the real protocol, not just TCP."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even if this thread runs a loop."""

    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def kafka_brokers(
    bootstrap_servers: str, wait: float = 5.0, **options: Any
) -> list[tuple[str, int]]:
    """The (host, port) of every broker a Metadata request lists; raises if none answers.
    `options`: how to authenticate (aiokafka's keywords: `security_protocol`, ...)."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(wait * 1000),
        client_id="heddle-devstack-probe",
        **options,
    )
    try:
        await asyncio.wait_for(client.bootstrap(), wait)
        return [(broker.host, broker.port) for broker in client.cluster.brokers()]
    finally:
        await client.close()


def kafka_ready(bootstrap_servers: str, timeout: float = 5.0) -> bool:
    """Whether a Kafka-protocol broker answers a Metadata request listing a broker."""
    try:
        return bool(run_sync(lambda: kafka_brokers(bootstrap_servers, timeout)))
    except Exception:  # any failure means "not yet"
        return False
