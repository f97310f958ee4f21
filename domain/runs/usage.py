"""A run's usage (tokens, cost, model calls) and its budget: the limits that pause a run
until someone approves going on."""

from __future__ import annotations

from typing import Any

from domain.runs.base import BUDGET_TASK, RunBase


def new_usage() -> dict[str, Any]:
    """A run's usage totals before any model call."""
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_tokens": 0,
        "cost_usd": 0.0,
        "llm_calls": 0,
        "cost_complete": True,
    }


def add_usage(usage: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Totals after one more model answer (a recorded `LlmResult`); `cost_complete` turns
    false for good once an answer's price was unknown."""
    tokens = result.get("usage", {})
    return {
        "input_tokens": usage.get("input_tokens", 0) + tokens.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0) + tokens.get("output_tokens", 0),
        "cached_tokens": usage.get("cached_tokens", 0) + tokens.get("cached_tokens", 0),
        "cost_usd": round(usage.get("cost_usd", 0.0) + result.get("cost_usd", 0.0), 8),
        "llm_calls": usage.get("llm_calls", 0) + 1,
        "cost_complete": usage.get("cost_complete", True) and result.get("priced", True),
    }


class Usage(RunBase):
    """Decisions about the budget."""

    def budget_crossed(self) -> list[tuple[str, str]]:
        """The limits of the workflow's budget that this run has reached and no one waived,
        each with a line that says so."""
        budget = self.spec.budget
        if budget is None:
            return []
        used = {
            "max_tokens": self.usage["input_tokens"] + self.usage["output_tokens"],
            "max_cost_usd": self.usage["cost_usd"],
            "max_steps": self.steps,
        }
        return [
            (limit, f"{limit} {getattr(budget, limit)} (used {used[limit]})")
            for limit in ("max_tokens", "max_cost_usd", "max_steps")
            if getattr(budget, limit) is not None
            and used[limit] >= getattr(budget, limit)
            and limit not in self.waived
        ]

    def _pause_for_budget(self, crossed: list[tuple[str, str]]) -> None:
        budget = self.spec.budget
        assert budget is not None
        why = ", ".join(text for _, text in crossed)
        task = {
            "type": "approval",
            "title": f"Run {self.id} of {self.workflow} reached its budget: {why}. "
            "Approve to go on without this limit, reject to cancel the run.",
            "assignee": None,
            "role": budget.approver_role,
            "priority": 90,
            "due_at": None,
            "form": {"type": "object"},
            "value": None,
            "limits": [limit for limit, _ in crossed],
        }
        self._run_paused("heddle", f"budget: {why}", task)

    def _budget_task_open(self) -> bool:
        return self.tasks.get(BUDGET_TASK, {}).get("status") == "open"
