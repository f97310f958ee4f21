"""CEL expressions: what users see when one fails."""

from __future__ import annotations

import pytest

from domain.errors import ExpressionError
from domain.expressions import evaluate, evaluate_condition


def test_a_failing_expression_names_the_problem_without_copying_the_run_data() -> None:
    activation = {"vars": {"name": "Ada", "account": "acct-7731-private"}, "input": {}}
    with pytest.raises(ExpressionError) as caught:
        evaluate("vars.name.lowerAscii()", activation)
    message = str(caught.value)
    assert message == "'vars.name.lowerAscii()' failed: undeclared reference to 'lowerAscii'"
    assert "acct-7731-private" not in message


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(ExpressionError, match="no such member in mapping: 'tier'"):
        evaluate("vars.tier == 'vip'", {"vars": {}})


def test_a_condition_must_be_a_boolean() -> None:
    with pytest.raises(ExpressionError, match="gave str, expected a boolean"):
        evaluate_condition("vars.tier", {"vars": {"tier": "vip"}})
