"""The committed copy of the API's OpenAPI document (`docs/openapi.json`): `make openapi`
rewrites it, and `tests/unit/test_openapi.py` fails when it differs from the app's.

`/openapi.json`, `/docs` and `/redoc` are public, like the health checks: the document
describes the routes, never a tenant's data (README, "API keys")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from api.http.app import create_app
from infra.runtime import Heddle
from infra.settings import Settings
from infra.store import EventStore

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def document() -> dict[str, Any]:
    """The document of the app, built on a Heddle that connects nothing."""
    store = EventStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    runtime = Heddle(Settings(), "postgresql://unused/heddle", "unused:9092", store=store)
    return create_app(runtime).openapi()


def render() -> str:
    """The exact text committed in `docs/openapi.json`."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    COMMITTED.write_text(render())
    print(f"wrote {COMMITTED.relative_to(COMMITTED.parents[1])}")


if __name__ == "__main__":
    main()
