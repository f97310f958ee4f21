"""CEL expressions over `{input, vars, nodes, run}`, compiled once and evaluated sandboxed.

CEL has no attribute access to Python objects, no loops and no I/O, so model output
that ends up in variables is only ever data to it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes

from domain.errors import ExpressionError

MAX_EXPRESSION_LENGTH = 4096
_ENVIRONMENT = celpy.Environment()


@lru_cache(maxsize=2048)
def compile_expression(source: str) -> celpy.Runner:
    """Parse and plan an expression; raises ExpressionError with the parser's message."""
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        return _ENVIRONMENT.program(_ENVIRONMENT.compile(source))
    except Exception as error:  # celpy raises several parser error types
        raise ExpressionError(f"invalid CEL: {_first_line(error)}") from None


def evaluate(source: str, activation: dict[str, Any]) -> Any:
    """Evaluate an expression and return plain Python values."""
    program = compile_expression(source)
    try:
        result = program.evaluate(celpy.json_to_cel(activation))
    except Exception as error:
        raise ExpressionError(f"{source!r} failed: {_first_line(error)}") from None
    if isinstance(result, celpy.CELEvalError):
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
