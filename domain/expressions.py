"""CEL expressions over `{input, vars, nodes, run}`, compiled once and evaluated sandboxed.

CEL has no attribute access to Python objects, no loops and no I/O, so model output
that ends up in variables is only ever data to it.
"""

from __future__ import annotations

import operator
from functools import lru_cache
from typing import Any, cast

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError, Context, Evaluator

from domain.errors import ExpressionError

MAX_EXPRESSION_LENGTH = 4096
MAX_EXPRESSION_STEPS = 100_000
"""Steps (nodes of the expression evaluated, each time a macro such as `map` repeats them)
one evaluation may take: about a second of work at most (0.5 to 1.4 s measured on a busy
2-core machine)."""
MAX_VALUE_LENGTH = 1024 * 1024
"""The longest string or list an expression may make with `+`."""


class _OutOfSteps(BaseException):
    """Stops an evaluation at once: celpy turns an `Exception` raised inside a macro into
    an error value and carries on with the next item, so this is not one."""


class _Budget:
    def __init__(self) -> None:
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_EXPRESSION_STEPS:
            raise _OutOfSteps()


class _BoundedEvaluator(Evaluator):
    """celpy's evaluator, counting every node it evaluates against a shared budget."""

    budget: _Budget

    def sub_evaluator(self, ast: Any) -> Evaluator:
        evaluator = _BoundedEvaluator(ast, activation=self.activation)
        evaluator.budget = self.budget
        return evaluator

    def visit_children(self, tree: Any) -> Any:
        self.budget.step()
        return super().visit_children(tree)


class _BoundedRunner(celpy.InterpretedRunner):
    def evaluate(self, context: Any) -> Any:
        evaluator = _BoundedEvaluator(ast=self.ast, activation=self.new_activation())
        evaluator.budget = _Budget()
        try:
            return evaluator.evaluate(context)
        except _OutOfSteps:
            raise ExpressionError(
                f"the expression runs too long: more than {MAX_EXPRESSION_STEPS:,} steps"
            ) from None


def _bounded_add(left: Any, right: Any) -> Any:
    """CEL's `+`, refusing a string or list longer than `MAX_VALUE_LENGTH`."""
    if isinstance(left, (str, list)) and isinstance(right, (str, list)):
        size = len(left) + len(right)
        if size > MAX_VALUE_LENGTH:
            raise ExpressionError(
                f"the expression made a value of {size:,} characters or items, more than "
                f"{MAX_VALUE_LENGTH:,}"
            )
    return operator.add(left, right)


_ENVIRONMENT = celpy.Environment(runner_class=_BoundedRunner)
_FUNCTIONS = {"_+_": _bounded_add}


@lru_cache(maxsize=2048)
def compile_expression(source: str) -> celpy.Runner:
    """Parse and plan an expression; raises ExpressionError with the parser's message."""
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        return _ENVIRONMENT.program(_ENVIRONMENT.compile(source), functions=_FUNCTIONS)
    except Exception as error:  # celpy raises several parser error types
        raise ExpressionError(f"invalid CEL: {_first_line(error)}") from None


def evaluate(source: str, activation: dict[str, Any]) -> Any:
    """Evaluate an expression and return plain Python values."""
    program = compile_expression(source)
    try:
        result = program.evaluate(cast(Context, json_to_cel(activation)))  # a dict: a MapType
    except ExpressionError as error:
        raise ExpressionError(f"{source!r} failed: {error}") from None
    except Exception as error:
        raise ExpressionError(f"{source!r} failed: {_first_line(error)}") from None
    if isinstance(result, CELEvalError):
        raise ExpressionError(f"{source!r} failed: {_first_line(result)}")
    return to_python(result)


def evaluate_condition(source: str, activation: dict[str, Any]) -> bool:
    """Evaluate an expression that must produce a boolean."""
    value = evaluate(source, activation)
    if not isinstance(value, bool):
        raise ExpressionError(f"{source!r} gave {type(value).__name__}, expected a boolean")
    return value


def to_python(value: Any) -> Any:
    """Turn CEL values into JSON-compatible Python values."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.MapType):
        return {str(to_python(k)): to_python(v) for k, v in value.items()}
    if isinstance(value, celtypes.ListType):
        return [to_python(v) for v in value]
    if value is None or isinstance(value, celtypes.NullType):
        return None
    return str(value)


def _first_line(error: object) -> str:
    """The gist of a CEL error: its first line, without the activation celpy appends
    (which would copy the run's inputs and variables into error messages and events)."""
    text = error.args[0] if isinstance(error, Exception) and error.args else error
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(error).__name__
    line = line.split(" (in activation", 1)[0]
    return line if len(line) <= 300 else line[:300] + "..."
