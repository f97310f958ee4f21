"""The worker's part of `extract` nodes: find the text, ask the model, hand the answer to
the run (which checks the fields against the node's schema: `domain/extraction.py`).

The text comes from an uploaded document (read by an adapter: `infra/documents.py`) or is
the node's `document` itself. The run records where it came from (document id, pages,
characters), never the text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.definitions import ExtractNode
from domain.errors import NodeNotRunning
from domain.extraction import extraction_request, is_document_id
from domain.runs import WorkflowRun
from handlers.reactions.events import waiting_nodes
from handlers.reactions.model_calls import CompleteLlm, LlmCall, LlmOutcome, Recorder, call_llm
from handlers.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class DocumentText:
    """A document's text and where it came from (`document_id`, `content_type`, `pages`)."""

    text: str
    source: dict[str, Any]


ReadDocument = Callable[[str, str], Awaitable[DocumentText | None]]
"""(tenant, document id) → the text, None for no such document; ValueError if unreadable."""


@dataclass(frozen=True, slots=True)
class Extraction:
    """An `extract` node attempt waiting for its fields."""

    run_id: UUID
    tenant: str
    node_id: str
    attempt: int
    node: ExtractNode
    document: str
    instructions: str


@dataclass(slots=True)
class ExtractionOutcome:
    due: Extraction
    source: dict[str, Any]
    llm: LlmOutcome | None = None
    error: str | None = None


def extractions_due(events: list[dict[str, Any]], uow: UnitOfWork) -> list[Extraction]:
    """The `extract` nodes that started and still wait, once each."""
    due = []
    for run, data, _ in waiting_nodes(events, uow, {"extract"}):
        node = run.spec.nodes[data["node_id"]]
        assert isinstance(node, ExtractNode)  # waiting_nodes: of kind `extract`
        due.append(
            Extraction(
                run.id,
                run.tenant,
                data["node_id"],
                data["attempt"],
                node,
                data["input"]["document"],
                data["input"]["instructions"],
            )
        )
    return due


async def extract(
    due: Extraction, read_document: ReadDocument, complete: CompleteLlm, recorder: Recorder
) -> ExtractionOutcome:
    """Read the text and ask the model; never raises for a missing document or a model
    error (the outcome says what went wrong)."""
    if is_document_id(due.document):
        document_id = due.document.strip()
        try:
            found = await read_document(due.tenant, document_id)
        except ValueError as error:
            return ExtractionOutcome(due, {"document_id": document_id}, error=str(error))
        if found is None:
            return ExtractionOutcome(
                due,
                {"document_id": document_id},
                error=f"no document {document_id} for tenant {due.tenant!r}: upload it with "
                "POST /v1/documents (or heddle documents upload FILE) and pass the id it returns",
            )
        text, source = found.text, dict(found.source)
    else:
        text, source = due.document, {"document_id": None}
    source.update(characters=len(text), truncated=len(text) > due.node.max_chars)
    if not text.strip():
        return ExtractionOutcome(due, source, error="the document has no text (a scanned PDF?)")
    request = extraction_request(due.node, due.instructions, text)
    call = LlmCall(due.run_id, due.node_id, due.attempt, request, due.tenant, "extract")
    return ExtractionOutcome(due, source, llm=await call_llm(call, complete, recorder=recorder))


def record_extractions(outcomes: list[ExtractionOutcome], uow: UnitOfWork) -> None:
    """Record each outcome in its run: the fields, or why the node failed."""
    for outcome in outcomes:
        due = outcome.due
        run = uow.get(due.run_id, WorkflowRun)
        if run is None:
            continue
        with suppress(NodeNotRunning):
            if outcome.llm is not None and outcome.llm.result is not None:
                run.complete_extraction(
                    due.node_id,
                    due.attempt,
                    outcome.source,
                    outcome.llm.result,
                    now=datetime.now(UTC),
                )
            elif outcome.llm is not None and outcome.llm.error is not None:
                run.fail_node(
                    due.node_id, due.attempt, outcome.llm.error.to_dict(), now=datetime.now(UTC)
                )
            else:
                error = {"class": "task", "message": outcome.error, "source": outcome.source}
                run.fail_node(due.node_id, due.attempt, error, now=datetime.now(UTC))
