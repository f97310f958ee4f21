"""Durations as definitions write them: `90s`, `15m`, `4h`, `2d`."""

from __future__ import annotations

DURATION = r"^\d+(\.\d+)?\s*(s|m|h|d)$"


def seconds(duration: str) -> float:
    """`90s`, `15m`, `4h` or `2d` in seconds."""
    value, unit = float(duration[:-1].strip()), duration[-1]
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
