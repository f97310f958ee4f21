"""Timers: set as events (`TimerSet`), fired by the timer role through `FireTimer` commands.
Times are computed from the `now` the caller passes in: the domain reads no clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from domain.definitions import WaitNode
from domain.durations import DURATION, seconds
from domain.errors import ExpressionError, RunNotActive
from domain.expressions import evaluate
from domain.runs.base import RunBase


def moment(value: str, field: str, now: datetime) -> datetime:
    """A time given as ISO 8601 (`2026-11-24T09:00:00Z`) or as a duration from `now` (`2h`)."""
    if re.match(DURATION, value):
        return later(value, now)
    try:
        return aware(value)
    except ValueError:
        raise RunNotActive(
            f"{field}: {value!r} is neither an ISO 8601 time nor a duration such as 2h"
        ) from None


def later(duration: str | float, now: datetime) -> datetime:
    """`now` plus a duration (`90s`, `2h`) or a number of seconds."""
    delay = seconds(duration) if isinstance(duration, str) else duration
    return now + timedelta(seconds=delay)


def aware(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC. Raises ValueError for anything else."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class Timers(RunBase):
    """Setting timers and acting on those that fire."""

    def _set_timer(
        self,
        timer_id: str,
        purpose: str,
        delay: float,
        node_id: str | None = None,
        attempt: int | None = None,
        at: datetime | None = None,
        *,
        now: datetime,
    ) -> None:
        fire_at = at if at is not None else later(delay, now)
        self._timer_set(timer_id, purpose, fire_at.isoformat(), node_id, attempt)

    def fire_timer(self, timer_id: str, *, now: datetime) -> bool:
        """A timer is due: do what it was set for. False (and nothing changes) when it has
        fired already, or no longer matters (the run ended, the node moved on)."""
        timer = self.timers.get(timer_id)
        if timer is None or timer["status"] != "pending" or self.is_finished:
            return False
        self._timer_fired(timer_id)
        node_id, attempt, purpose = timer["node_id"], timer["attempt"], timer["purpose"]
        state = self.nodes.get(node_id, {}) if node_id else {}
        if purpose == "deadline":
            deadline = self.spec.deadline
            self._run_failed(
                {"class": "deadline", "message": f"the run passed its deadline of {deadline}"}
            )
        elif purpose == "resume" and self.status == "paused":
            if not self._budget_task_open():
                self._run_resumed("heddle")
                self.advance(now=now)
        elif purpose == "retry" and state.get("status") == "retrying":
            self._start_node(node_id, now=now)
            self.advance(now=now)
        elif purpose == "edge":
            self._scheduled_edge_due(timer_id, node_id, attempt, now=now)
        elif state.get("status") == "running" and state.get("attempt") == attempt:
            if purpose == "wait":
                node = self.spec.nodes[node_id]
                fired = {"fired_at": timer["fire_at"]}
                self._complete_with_output(node_id, node, fired, now=now)
                self.advance(now=now)
            elif purpose == "timeout":
                self._fail_node(
                    node_id,
                    attempt,
                    {
                        "class": "timeout",
                        "message": f"node {node_id!r} took longer than its timeout of "
                        f"{self.spec.nodes[node_id].timeout}",
                    },
                    now=now,
                )
        return True

    def _wait_until(self, node: WaitNode, *, now: datetime) -> datetime:
        if node.for_:
            return later(node.for_, now)
        assert node.until
        value = evaluate(node.until, self.activation())
        try:
            return aware(str(value))
        except ValueError:
            raise ExpressionError(
                f"until {node.until!r} gave {value!r}, not an ISO 8601 time"
            ) from None
