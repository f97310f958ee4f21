"""Documents for `extract` nodes: uploaded bytes stored once in PostgreSQL, per tenant.

A document's id is derived from its content (`doc_` and 32 hex digits of its SHA-256), so
the same file uploaded twice is one document. Text is read from it when a node needs it:
plain text as UTF-8, PDFs page by page with pypdf. Documents are not events: runs record
the id, the pages and the number of characters, never the text.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from handlers.reactions.extraction import DocumentText

PDF = "application/pdf"
TEXT_TYPES = ("text/plain", "text/markdown", "text/csv", "application/json")
CONTENT_TYPES = (PDF, *TEXT_TYPES)


class DocumentInvalid(ValueError):
    """The bytes are not a document Heddle can read; the message says why."""


def document_id(content: bytes) -> str:
    return "doc_" + hashlib.sha256(content).hexdigest()[:32]


def media_type(content_type: str) -> str:
    """`text/plain; charset=utf-8` → `text/plain`; a type Heddle cannot read raises."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in CONTENT_TYPES:
        raise DocumentInvalid(
            f"content type {content_type or 'none'!r} is not supported: send one of "
            + ", ".join(CONTENT_TYPES)
        )
    return media


def read_text(content_type: str, content: bytes) -> tuple[str, int | None]:
    """The text of a document and its number of pages (None for plain text)."""
    if content_type != PDF:
        try:
            return content.decode("utf-8"), None
        except UnicodeDecodeError as error:
            raise DocumentInvalid(f"the document is not UTF-8 text: {error}") from None
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted:
            raise DocumentInvalid("the PDF is encrypted: upload it without a password")
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        if isinstance(error, DocumentInvalid):
            raise
        raise DocumentInvalid(f"not a readable PDF: {error}") from None
    return "\n\n".join(page.strip() for page in pages), len(pages)


@dataclass(frozen=True)
class Documents:
    """The tenant-scoped document table."""

    pool: AsyncConnectionPool[Any]

    async def save(
        self, tenant: str, content_type: str, content: bytes, actor: str
    ) -> dict[str, Any]:
        """Store a document once (its id is its content's); raises `DocumentInvalid` for
        bytes that cannot be read as the type they claim."""
        media = media_type(content_type)
        _, pages = await asyncio.to_thread(read_text, media, content)
        found = document_id(content)
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO documents (tenant, document_id, content_type, size, pages, content,"
                " uploaded_by) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [tenant, found, media, len(content), pages, content, actor],
            )
        return {"document_id": found, "content_type": media, "size": len(content), "pages": pages}

    async def about(self, tenant: str, document_id: str) -> dict[str, Any] | None:
        """A document's id, type, size, pages and who uploaded it when, or None."""
        names = ("document_id", "content_type", "size", "pages", "uploaded_by", "uploaded_at")
        row = await self._row(tenant, document_id, names)
        if row is None:
            return None
        return {**dict(zip(names, row, strict=True)), "uploaded_at": row[5].isoformat()}

    async def text(self, tenant: str, document_id: str) -> DocumentText | None:
        """A document's text and where it came from, or None when the tenant has none."""
        row = await self._row(tenant, document_id, ("content_type", "content"))
        if row is None:
            return None
        content_type, content = row
        text, pages = await asyncio.to_thread(read_text, content_type, bytes(content))
        source = {"document_id": document_id, "content_type": content_type, "pages": pages}
        return DocumentText(text, source)

    async def _row(self, tenant: str, document_id: str, columns: tuple[str, ...]) -> Any:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {', '.join(columns)} FROM documents"
                " WHERE tenant = %s AND document_id = %s",
                [tenant, document_id],
            )
            return await cursor.fetchone()
