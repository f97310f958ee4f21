"""Extraction: the worker reads the document and asks the model; the run checks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.definitions import ExtractNode
from domain.extraction import parse_fields
from domain.llm import LlmResult
from domain.runs.base import RunBase


class Extraction(RunBase):
    """An `extract` node's answer."""

    def complete_extraction(
        self,
        node_id: str,
        attempt: int,
        source: dict[str, Any],
        result: LlmResult,
        *,
        now: datetime,
    ) -> None:
        """Record an `extract` node's model answer and where its text came from; the node
        completes with the fields that match its schema and those that do not, each with
        the reason. An answer that is not a JSON object fails the node (class `task`)."""
        self.check_node_is_running(node_id, attempt)
        node = self.spec.nodes[node_id]
        assert isinstance(node, ExtractNode)
        self._extraction_completed(node_id, attempt, source, result.model_dump(mode="json"))
        try:
            fields, invalid = parse_fields(node.fields_schema, result.text)
        except ValueError as error:
            self._fail_node(node_id, attempt, {"class": "task", "message": str(error)}, now=now)
            return
        output = {"fields": fields, "invalid": invalid, "source": source}
        self._complete_with_output(node_id, node, output, now=now)
        self.advance(now=now)
