"""Templates and expressions run with limits: a template or expression that would run for
ages or fill memory fails at once with a message that says why, attribute escapes are
refused, and model output is data that never runs. Each test asserts what the user reads
(in the run's error or the publishing problem)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.errors import ExpressionError, TemplateError
from domain.expressions import MAX_EXPRESSION_STEPS, evaluate
from domain.templates import MAX_RENDERED_LENGTH, MAX_TEMPLATE_STEPS, parse_template, render
from tests.unit.test_runs import answer
from tests.unit.test_scheduling import start

CONTEXT: dict[str, Any] = {
    "input": {"name": "Ada", "numbers": list(range(1000)), "text": "x"},
    "vars": {},
    "nodes": {},
    "run": {"id": "r", "workflow": "w", "version": 1},
}


def template_error(source: str) -> str:
    with pytest.raises(TemplateError) as error:
        render(source, CONTEXT)
    return str(error.value)


def expression_error(source: str) -> str:
    with pytest.raises(ExpressionError) as error:
        evaluate(source, CONTEXT)
    return str(error.value)


RUNS_TOO_LONG = (
    f"the template runs too long: more than {MAX_TEMPLATE_STEPS:,} loop iterations and calls"
)


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for a in input.numbers %}{% for b in input.numbers %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
    ],
)
def test_a_template_that_would_run_for_ages_fails_saying_it_runs_too_long(source: str) -> None:
    assert template_error(source) == RUNS_TOO_LONG


def test_a_range_beyond_the_sandboxs_limit_is_refused() -> None:
    assert template_error("{% for i in range(10**9) %}x{% endfor %}") == (
        "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000)."
    )


def test_a_loop_within_the_budget_still_renders() -> None:
    assert render("{% for i in range(90000) %}{% endfor %}{{ input.numbers | sum }}", CONTEXT) == (
        "499500"
    )


def test_output_beyond_the_limit_fails_before_it_is_all_made() -> None:
    assert template_error("{% for i in range(1000) %}{{ 'y' * 2000 }}{% endfor %}") == (
        f"rendered text longer than {MAX_RENDERED_LENGTH} characters"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' * 10**9 }}", "the template made a value of 1,000,000,000 characters or items"),
        ("{{ 2 ** 100000 }}", "the template made a number larger than 2**4096"),
        (
            "{% set s = 'x' * 1000000 %}{{ s ~ s }}",
            "the template made a value of 2,000,000 characters",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "the template made a value of 2,097,152 characters or items",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s | replace('x', 'xx') %}{% endfor %}",
            "the template made a value of 2,097,152 characters",
        ),
        ("{{ 'x' | center(10**9) }}", "center(1000000000) would make a value larger than allowed"),
        ("{{ 'x'.ljust(10**9) }}", "ljust(1000000000) would make a value larger than allowed"),
    ],
)
def test_a_template_that_would_fill_memory_fails_saying_what_grew(
    source: str, message: str
) -> None:
    assert template_error(source).startswith(message)


@pytest.mark.parametrize(
    ("source", "attribute"),
    [
        ("{{ ''.__class__ }}", "'__class__' of 'str'"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "'__class__' of 'str'"),
        ("{{ cycler.__init__.__globals__.os }}", "'__init__' of 'type'"),
        ("{{ lipsum.__globals__ }}", "'__globals__' of 'function'"),
        ("{{ self._TemplateReference__context }}", "'_TemplateReference__context'"),
        ("{{ input.numbers.append(1) }}", "'append' of 'list'"),
    ],
)
def test_attribute_escapes_are_refused(source: str, attribute: str) -> None:
    message = template_error(source)
    assert message.startswith(f"not allowed in a template: access to attribute {attribute}")


def test_a_template_that_recurses_without_end_fails_saying_so() -> None:
    assert template_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}") == (
        "the template recurses too deeply"
    )


@pytest.mark.parametrize(
    "source",
    [
        "size(input.numbers.map(a, input.numbers.map(b, a + b)))",
        "input.numbers.exists(a, input.numbers.exists(b, a + b < 0))",
        "input.numbers.all(a, input.numbers.all(b, a + b >= 0)) || true",
    ],
)
def test_an_expression_that_would_run_for_ages_fails_saying_it_runs_too_long(source: str) -> None:
    assert expression_error(source) == (
        f"{source!r} failed: the expression runs too long: more than {MAX_EXPRESSION_STEPS:,} steps"
    )


def test_an_expression_that_doubles_a_string_fails_when_it_grows_too_long() -> None:
    source = "[input.text]" + ".map(a, a + a)" * 25
    assert expression_error(source).endswith(
        "failed: the expression made a value of 2,097,152 characters or items, more than 1,048,576"
    )


def test_expressions_within_the_limits_still_work() -> None:
    assert evaluate("size(input.numbers.filter(n, n % 2 == 0))", CONTEXT) == 500
    assert evaluate("size(input.numbers + input.numbers)", CONTEXT) == 2000


def test_a_run_whose_template_runs_too_long_fails_its_node_with_the_reason() -> None:
    run = start(
        {
            "name": "slow",
            "start": "s",
            "nodes": {
                "s": {
                    "kind": "set",
                    "vars": {
                        "x": "{% for i in range(99999) %}{% for j in range(9) %}"
                        "{% endfor %}{% endfor %}"
                    },
                }
            },
        }
    )
    assert run.status == "failed"
    assert run.error == {"node": "s", "class": "definition", "message": RUNS_TOO_LONG}


def test_model_output_is_data_a_later_template_never_runs() -> None:
    run = start(
        {
            "name": "echo",
            "start": "ask",
            "nodes": {
                "ask": {
                    "kind": "llm",
                    "model": "scripted:echo",
                    "prompt": "p",
                    "output": "said",
                    "next": "use",
                },
                "use": {"kind": "set", "vars": {"quoted": "She said: {{ vars.said }}"}},
            },
        }
    )
    run.complete_llm_call("ask", 1, answer("{{ 7*7 }} {{ ''.__class__ }}"), now=datetime.now(UTC))
    assert run.variables["quoted"] == "She said: {{ 7*7 }} {{ ''.__class__ }}"


WORKFLOWS_MD = (Path(__file__).parents[2] / "docs" / "workflows.md").read_text()
OVER_EACH_LIMIT = [  # in the order of the table in docs/workflows.md
    "{% for a in input.numbers %}{% for b in input.numbers %}{% endfor %}{% endfor %}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{% for i in range(1000) %}{{ 'y' * 2000 }}{% endfor %}",
    "{% set s = 'x' * 1000000 %}{{ s ~ s }}",
    "{{ 'x' | center(10**9) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "x" * 65537,
]


def test_the_limits_table_in_the_docs_quotes_the_messages_users_get() -> None:
    table = WORKFLOWS_MD.split("**Limits.** Templates run", 1)[1].split("\n\n", 2)[1]
    quoted = [re.findall(r"`([^`]+)`", row.split("|")[2])[0] for row in table.splitlines()[2:]]
    assert len(quoted) == len(OVER_EACH_LIMIT)
    for message, source in zip(quoted, OVER_EACH_LIMIT, strict=True):
        assert refusal(source).startswith(message.removesuffix(" (when you publish)"))


def refusal(source: str) -> str:
    """What publishing (which parses) or rendering says about `source`."""
    try:
        parse_template(source)
        render(source, CONTEXT)
    except TemplateError as error:
        return str(error)
    raise AssertionError(f"{source[:40]!r} was accepted")


def test_the_expression_limits_in_the_docs_are_the_messages_users_get() -> None:
    section = WORKFLOWS_MD.split("**Limits.** An evaluation", 1)[1].split("\n\n", 1)[0]
    too_long, too_large = (
        " ".join(quoted.split()) for quoted in re.findall(r"`\.\.\. failed: ([^`]+)`", section)
    )
    assert expression_error("size(input.numbers.map(a, input.numbers.map(b, a + b)))").endswith(
        too_long
    )
    assert expression_error("[input.text]" + ".map(a, a + a)" * 25).endswith(too_large)
