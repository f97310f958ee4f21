"""The timers role: a loop that sends `FireTimer` for every due timer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from infra.bootstrap import Ports
from infra.timers import Send, Timers


def timers_loop(ports: Ports, send_command: Send) -> Callable[[], Awaitable[None]]:
    """The timers' loop, polling every `timer_poll_ms`."""
    return Timers(ports.reads, send_command, ports.settings.timer_poll_ms / 1000).run
