"""Parse a definition document: its shape (pydantic), then every check of
`domain/definitions/problems.py`, all problems reported at once with their paths."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from domain.definitions.nodes import NODE_KINDS
from domain.definitions.problems import expression_problems, graph_problems
from domain.definitions.spec import WorkflowSpec
from domain.errors import DefinitionInvalid, Problem
from domain.schemas import nesting_problem


def parse_definition(document: Any, allowed_hosts: frozenset[str] | None = None) -> WorkflowSpec:
    """Validate a definition document; raises DefinitionInvalid listing every problem.
    `allowed_hosts`: the hosts its HTTP tools may call (the deployment's allow-list, given
    when a definition is published); None checks no host."""
    if problem := nesting_problem(document):
        raise DefinitionInvalid([Problem("", problem)])
    try:
        spec = WorkflowSpec.model_validate(document)
    except ValidationError as error:
        raise DefinitionInvalid([_problem_from(e) for e in _next_errors(error.errors())]) from None
    problems = graph_problems(spec) + expression_problems(spec, allowed_hosts)
    if problems:
        raise DefinitionInvalid(problems)
    return spec


NEXT_BRANCHES = ("str", "list[Edge]")
"""How pydantic names the two forms of `next` in an error's location."""


def _next_errors(errors: list[Any]) -> list[Any]:
    """The errors of a `next` as one form of it: a list's problems without the complaint
    that it is no string; for anything else, one error that names both forms."""
    kept, named = [], set()
    for error in errors:
        loc = error["loc"]
        branch = next((i for i, part in enumerate(loc) if part in NEXT_BRANCHES), None)
        if branch is None:
            kept.append(error)
        elif isinstance(error["input"], list) and loc[branch] == "str":
            continue
        elif isinstance(error["input"], (list, str)) or len(loc) > branch + 1:
            kept.append(error)
        elif loc[:branch] not in named:
            named.add(loc[:branch])
            kept.append({**error, "loc": loc[:branch], "msg": "give a node id or a list of edges"})
    return kept


def _problem_from(error: Any) -> Problem:
    path = ""
    for index, part in enumerate(error["loc"]):
        if part in NEXT_BRANCHES:
            continue  # pydantic's name for a form of `next`
        if isinstance(part, int):
            path += f"[{part}]"
        elif index == 2 and part in NODE_KINDS and path.startswith("nodes."):
            continue  # pydantic's discriminator tag, not part of the user's document
        else:
            path += f".{part}" if path else str(part)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        path += ".kind"
    return Problem(path, error["msg"])
