"""docs/reading.md names every field of an attempt and every usage grouping the API has."""

from __future__ import annotations

import re
from pathlib import Path

from projections.node_attempts import FIELDS as ATTEMPT_FIELDS
from projections.usage import GROUPS
from projections.usage import SUMS as TOTALS

READING_MD = (Path(__file__).parents[2] / "docs" / "reading.md").read_text()


def test_the_attempt_fields_table_lists_what_the_endpoint_answers() -> None:
    table = READING_MD.split("<!-- attempt-fields -->", 1)[1].split("\n\n", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", table, re.M)[1:]  # past the header
    documented = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    assert documented == {*ATTEMPT_FIELDS, "position"}


def test_the_usage_section_names_each_grouping_and_total() -> None:
    usage = READING_MD.split("## Usage and cost", 1)[1].split("\n## ", 1)[0]
    for name in [*GROUPS, *re.findall(r" AS (\w+)", TOTALS)]:
        assert f"`{name}`" in usage


def test_the_artifact_fields_table_lists_what_the_endpoints_answer() -> None:
    from projections.artifacts import FIELDS

    table = READING_MD.split("<!-- artifact-fields -->", 1)[1].split("\n\n", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", table, re.M)[1:]  # past the header
    documented = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    assert documented == {*FIELDS, "position", "content"}
