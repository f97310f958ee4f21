from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Up


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    stack = Up(tmp_path / "heddle-data")
    try:
        yield stack
    finally:
        stack.kill()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One `heddle up` for the tests of a module."""
    up = Up(tmp_path_factory.mktemp("stack") / "heddle-data")
    try:
        up.start()
        yield up
    finally:
        up.kill()
