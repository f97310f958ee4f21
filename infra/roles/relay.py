"""The relay role: a loop that copies new events from the store to `heddle.events`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from infra import metrics
from infra.bootstrap import Ports
from infra.relay import Relay


def relay_loop(ports: Ports, epoch: str) -> Callable[[], Awaitable[None]]:
    """The relay's loop, tracking its position as `relay@<epoch>`."""
    settings = ports.settings
    assert settings.database_url  # build() checked it
    relay = Relay(
        ports.store, settings.database_url, ports.topics.events,
        settings, position_name=f"relay@{epoch}", dlq_topic=ports.topics.dlq,
    )  # fmt: skip
    store, name = ports.store, relay.position_name

    def lag() -> int:
        head = store.recorder.max_notification_id() or 0
        return max(0, head - store.positions([name]).get(name, 0))

    metrics.watch_relay(lag)
    return relay.run
