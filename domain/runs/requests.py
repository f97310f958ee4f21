"""Run-level model calls: a call the run asks for outside any node, keyed by its
purpose (an edge's `llm` validator: "validator"). The worker answers it
(handlers/llm_requests.py) and records the answer with `complete_llm_request` or
`fail_llm_request`; the run hands it to the method LLM_REQUEST_PURPOSES names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.errors import LlmRequestNotPending
from domain.llm import LlmRequest, LlmResult, unfinished
from domain.runs.base import RunBase


class ModelRequests(RunBase):
    """Run-level model calls: asking, and taking the answer."""

    def _request_llm(
        self,
        request_id: str,
        purpose: str,
        request: LlmRequest,
        context: dict[str, Any],
        *,
        now: datetime,
    ) -> None:
        assert purpose in LLM_REQUEST_PURPOSES, purpose
        self._llm_requested(request_id, purpose, request.model_dump(mode="json"), context)
        recorded = self._recorded.get(request.fingerprint())
        if recorded is not None:  # a fork in `recorded` mode: the same call was answered
            self._llm_request_replayed(request_id, purpose, recorded)
            result = LlmResult.model_validate(recorded)
            getattr(self, LLM_REQUEST_PURPOSES[purpose])(context, result, None, now=now)

    def check_llm_request_pending(self, request_id: str) -> dict[str, Any]:
        """The pending request `request_id`; raises LlmRequestNotPending otherwise."""
        pending = self.llm_requests.get(request_id)
        if self.is_finished or pending is None or pending["status"] != "pending":
            raise LlmRequestNotPending(f"run {self.id} waits for no model call {request_id!r}")
        return pending

    def complete_llm_request(self, request_id: str, result: LlmResult, *, now: datetime) -> None:
        """Record the model's answer to a run-level request and act on it; an answer the
        model did not finish is acted on as a failure (class `incomplete`)."""
        pending = self.check_llm_request_pending(request_id)
        self._llm_request_completed(request_id, pending["purpose"], result.model_dump(mode="json"))
        answered = getattr(self, LLM_REQUEST_PURPOSES[pending["purpose"]])
        why = unfinished(result)
        if why is None:
            answered(pending["context"], result, None, now=now)
        else:
            failure = {
                "class": "incomplete",
                "message": f"{why}: raise its max_tokens",
                "finish_reason": result.finish_reason,
            }
            answered(pending["context"], None, failure, now=now)
        self.advance(now=now)

    def fail_llm_request(self, request_id: str, error: dict[str, Any], *, now: datetime) -> None:
        """Record that a run-level request got no answer (after the provider's retries)."""
        pending = self.check_llm_request_pending(request_id)
        self._llm_request_failed(request_id, pending["purpose"], error)
        getattr(self, LLM_REQUEST_PURPOSES[pending["purpose"]])(
            pending["context"], None, error, now=now
        )
        self.advance(now=now)


LLM_REQUEST_PURPOSES = {"validator": "_validator_answered", "action": "_action_answered"}
"""For each purpose of a run-level model call, the `WorkflowRun` method that takes the
answer: `(context, result or None, error or None)`."""
