"""How large stored events and `heddle.events` messages are, for the payloads that used to
break the broker's limit: a 900 KB input of `€`, a 5 MB answer kept in two fields, and a
2,000-message thread. Run by hand: `.venv/bin/python bench/sizes.py` (embedded PostgreSQL,
no Kafka: the messages are what the relay would publish)."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.llm import LlmResult, Usage
from domain.threads import Thread
from infra.claims import CLAIMS_TABLE
from infra.devstack import EmbeddedPostgres, create_database
from infra.relay import Relay
from infra.store import EventStore, store_environment


class Note(Aggregate):
    """An input, then an answer kept twice (as a model call's result and as an output)."""

    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text

    @event("Answered")
    def answer(self, result: dict[str, Any], output: str) -> None:
        self.output = output


def report(store: EventStore, aggregate_id: uuid.UUID) -> None:
    relay = Relay(store, "unused", "events")
    notifications = [
        n
        for n in store.recorder.select_notifications(0, 1_000_000)
        if n.originator_id == aggregate_id
    ]
    sizes: dict[str, list[tuple[int, int]]] = {}
    for notification, (_, value, _) in zip(
        notifications, relay.messages(notifications), strict=True
    ):
        kind = notification.topic.rsplit(".", 1)[1]
        sizes.setdefault(kind, []).append((len(notification.state), len(value)))
    for kind, pairs in sizes.items():
        stored, sent = max(p[0] for p in pairs), max(p[1] for p in pairs)
        print(f"  {kind}: {len(pairs)} event(s), at most {stored} bytes stored, {sent} sent")


def main() -> None:
    with EmbeddedPostgres(Path(tempfile.mkdtemp())) as postgres:
        url = create_database(postgres.url, "sizes")
        store = EventStore(env=store_environment(url, 0, create_tables=True))
        text = "€" * 300_000
        answer = "".join(f"Line {i}: ça coûte {i} €.\n" for i in range(200_000))
        note = Note(text)
        note.answer({"text": answer, "model": "m"}, answer)
        store.save(note)
        escaped = len(json.dumps(text).encode())
        print(f"input: {len(text.encode())} bytes of UTF-8, {escaped} as `\\u` escapes")
        print(f"answer: {len(answer.encode())} bytes, in two fields of one event")
        report(store, note.id)
        with store.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
            cursor.execute(f"SELECT length(value) AS size FROM {CLAIMS_TABLE} ORDER BY 1")
            print("  claimed values (bytes):", [row["size"] for row in cursor.fetchall()])

        thread = Thread(
            thread_id=uuid.uuid4(), tenant="t", actor="ada", title="", replies="llm",
            reply={"model": "openai:gpt-4o-mini", "system": "Be brief."},
        )  # fmt: skip
        said = LlmResult(
            text="Noted.", finish_reason="stop", usage=Usage(), model="m", provider="p",
            latency_ms=1.0,
        )  # fmt: skip
        for i in range(1000):
            thread.post(f"{i}: " + "Thanks for the update on my order; " * 8, "ada")
            thread.record_reply(f"r-m{len(thread.messages)}", said)
        store.save(thread)
        last = len(thread.request().model_dump_json().encode())
        print(f"thread of {len(thread.messages)} messages (the last transcript: {last} bytes)")
        report(store, thread.id)
        store.close()


if __name__ == "__main__":
    main()
