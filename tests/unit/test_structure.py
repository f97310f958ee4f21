"""The rooms stay small and their doors public: a newcomer finds a change's place by name.

Layers and import cycles are checked by `make lint` (import-linter, `pyproject.toml`);
this checks what import-linter cannot: sizes, and private names used across modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import pytest

from domain.definitions.nodes import NODE_KINDS, Node
from domain.runs.starters import NODE_STARTERS
from infra.migrations import migrations

ROOT = Path(__file__).parents[2]
PACKAGES = ("domain", "handlers", "projections", "api", "infra")
MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 100


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def test_no_module_is_longer_than_800_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources(*PACKAGES)
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"split these modules by concern: {long}"


def test_no_function_is_longer_than_100_lines() -> None:
    long = [
        f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"
        for p in sources(*PACKAGES)
        for node in ast.walk(parsed(p))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert not long, "\n".join(long)


@pytest.mark.parametrize("folder", [*PACKAGES, "tests", "bench"])
def test_no_private_name_is_imported_from_another_module(folder: str) -> None:
    """A helper another module needs is public; `from x import _y` hides a seam."""
    ours = (*PACKAGES, "tests", "bench")
    found = [
        f"{p.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}"
        for p in sources(folder)
        for node in ast.walk(parsed(p))
        if isinstance(node, ast.ImportFrom)
        and (node.level > 0 or (node.module or "").split(".")[0] in ours)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not found, "make these public (or move them):\n" + "\n".join(found)


def test_every_node_kind_has_a_starter() -> None:
    """A new node kind that the run could not start would fail only when a run reaches it."""
    kinds = get_args(get_args(Node)[0])
    assert {get_args(k.model_fields["kind"].annotation)[0] for k in kinds} == set(NODE_KINDS)
    assert set(kinds) == set(NODE_STARTERS)


SCHEMA_CHANGE = re.compile(r"\b(CREATE|ALTER|DROP)\s+(TABLE|INDEX)\b", re.IGNORECASE)
MIGRATING = {"infra/claims.py", "infra/migrations/__init__.py"}
"""The migrations' own table, and the event store's claim checks (made with the
`eventsourcing` library's tables)."""


def test_the_schema_changes_only_in_numbered_migrations() -> None:
    found = [migration.version for migration in migrations()]
    assert found == list(range(1, len(found) + 1))
    changing = {
        str(path.relative_to(ROOT))
        for path in sources(*PACKAGES)
        if SCHEMA_CHANGE.search(path.read_text())
    } - MIGRATING
    assert not changing, (
        f"{sorted(changing)} change the schema: put the statement in a new numbered migration, "
        "infra/migrations/NNNN_name.sql after the last (see infra/migrations/__init__.py)"
    )


def test_every_projection_says_which_version_of_its_code_built_its_rows() -> None:
    from infra.projector import PROJECTIONS

    unversioned = [
        n for n, p in PROJECTIONS.items() if not isinstance(getattr(p, "VERSION", None), int)
    ]
    assert not unversioned, f"give {unversioned} a `VERSION = 1` (projections/__init__.py)"
