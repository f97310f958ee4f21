"""Prompt templates: Jinja2 in a sandbox with strict undefined variables, and limits.

A missing variable is an error, not an empty string, so a typo in a prompt fails the
node with a message instead of quietly sending the model half a prompt.

Templates run inside the run's decisions, so a template must not be able to hang a
worker or fill its memory. Jinja2's immutable sandbox refuses unsafe attributes
(`__class__`, `__globals__`, ...) and changes to values; on top of it, every render has
a budget of `MAX_TEMPLATE_STEPS` steps (each loop iteration and each call is a step),
and no value it makes, nor its output, may exceed `MAX_RENDERED_LENGTH` characters.
The budget counts steps, not seconds, so a template fails the same way on every machine
and in every replay.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from functools import lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from domain.errors import TemplateError

MAX_TEMPLATE_LENGTH = 64 * 1024
MAX_RENDERED_LENGTH = 1024 * 1024
MAX_TEMPLATE_STEPS = 100_000
"""Loop iterations and calls one render may make (a few tenths of a second at most)."""
MAX_NUMBER_BITS = 4096
"""Integers a template computes stay below 2**4096 (about 1,233 digits)."""
_STEPS = "__heddle_steps"
_CONCAT = "__heddle_concat"
_SIZED_FILTER_ARGUMENTS = {"center", "indent", "wordwrap", "truncate", "batch", "slice"}
_SIZED_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


class _Budget:
    def __init__(self) -> None:
        self.steps = 0

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_TEMPLATE_STEPS:
            raise TemplateError(
                f"the template runs too long: more than {MAX_TEMPLATE_STEPS:,} loop iterations "
                "and calls"
            )


_BUDGET: ContextVar[_Budget] = ContextVar("template_budget")


def _budget() -> _Budget:
    budget = _BUDGET.get(None)
    if budget is None:  # rendered outside `render` (Jinja's own helpers): a budget of its own
        budget = _Budget()
        _BUDGET.set(budget)
    return budget


def _refuse_size(size: int, unit: str = "characters or items") -> None:
    """Refuse a value of `size` `unit` if it is larger than a template may make."""
    if size > MAX_RENDERED_LENGTH:
        raise TemplateError(
            f"the template made a value of {size:,} {unit}, more than {MAX_RENDERED_LENGTH:,}"
        )


def _checked(value: Any) -> Any:
    """`value`, unless it is a text or collection larger than a template may make."""
    if isinstance(value, (str, bytes, list, tuple, dict, set)):
        _refuse_size(len(value), "characters" if isinstance(value, (str, bytes)) else "items")
    if isinstance(value, int) and value.bit_length() > MAX_NUMBER_BITS:
        raise TemplateError(f"the template made a number larger than 2**{MAX_NUMBER_BITS}")
    return value


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


def _check_binop(op: str, left: Any, right: Any) -> None:
    """Refuse before computing it an operation whose result would be too large."""
    if op == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
        if right * math.log2(abs(left)) > MAX_NUMBER_BITS:
            raise TemplateError(f"the template made a number larger than 2**{MAX_NUMBER_BITS}")
    elif op == "*":
        for sequence, times in ((left, right), (right, left)):
            size = _length(sequence)
            if size is not None and isinstance(times, int):
                _refuse_size(size * times)
    elif op == "+":
        sizes = (_length(left), _length(right))
        if sizes[0] is not None and sizes[1] is not None:
            _refuse_size(sizes[0] + sizes[1])


def _steps(iterable: Iterable[Any]) -> Iterator[Any]:
    """A `for` loop's items, each a step of the render's budget."""
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _concat(*values: Any) -> str:
    """The `~` operator, refusing a text larger than a template may make."""
    parts = [str(value) for value in values]
    _refuse_size(sum(len(part) for part in parts), "characters")
    return "".join(parts)


class _Bounded(NodeTransformer):
    """Routes `for` loops and `~` through the budget and the size checks."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 (Jinja's visitor names)
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name(_STEPS, "load"), [node.iter], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return nodes.Call(nodes.Name(_CONCAT, "load"), list(node.nodes), [], None, None)


def _sized_filter(name: str, function: Any) -> Any:
    @wraps(function)
    def sized(*args: Any, **kwargs: Any) -> Any:
        _budget().step()
        if name in _SIZED_FILTER_ARGUMENTS:
            _refuse_large_numbers(name, [*args[1:], *kwargs.values()])
        return _checked(function(*args, **kwargs))

    return sized


def _refuse_large_numbers(name: str, arguments: Iterable[Any]) -> None:
    for argument in arguments:
        if isinstance(argument, int) and argument > MAX_RENDERED_LENGTH:
            raise TemplateError(f"{name}({argument}) would make a value larger than allowed")


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with a step budget and size limits on what it makes."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        self.filters = {name: _sized_filter(name, f) for name, f in self.filters.items()}
        self.globals[_STEPS] = _steps
        self.globals[_CONCAT] = _concat

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        _check_binop(operator_name, left, right)
        return _checked(_BINOPS[operator_name](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget().step()
        if getattr(__obj, "__name__", None) in _SIZED_METHODS:
            _refuse_large_numbers(__obj.__name__, [*args, *kwargs.values()])
        return _checked(super().call(__context, __obj, *args, **kwargs))


_BINOPS = {"*": operator.mul, "**": operator.pow, "+": operator.add}
_ENVIRONMENT = _Sandbox()


def parse_template(source: str) -> nodes.Template:
    """Check a template's syntax; raises TemplateError with the line of the problem."""
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(f"template longer than {MAX_TEMPLATE_LENGTH} characters")
    try:
        return _ENVIRONMENT.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateError(f"line {error.lineno}: {error.message}") from None


@lru_cache(maxsize=2048)
def _compiled(source: str) -> Any:
    tree = _Bounded().visit(parse_template(source))
    tree.set_environment(_ENVIRONMENT)
    return _ENVIRONMENT.from_string(tree)


def render(source: str, context: dict[str, Any]) -> str:
    """Render a template against `context`; raises TemplateError naming what went wrong."""
    if "{" not in source:
        return source
    token = _BUDGET.set(_Budget())
    pieces: list[str] = []
    size = 0
    try:
        for piece in _compiled(source).generate(context):
            size += len(piece)
            if size > MAX_RENDERED_LENGTH:
                raise TemplateError(f"rendered text longer than {MAX_RENDERED_LENGTH} characters")
            pieces.append(piece)
    except UndefinedError as error:
        raise TemplateError(f"undefined variable: {error.message}") from None
    except SecurityError as error:
        raise TemplateError(f"not allowed in a template: {error}") from None
    except TemplateError:
        raise
    except RecursionError:
        raise TemplateError("the template recurses too deeply") from None
    except Exception as error:
        raise TemplateError(f"{type(error).__name__}: {error}") from None
    finally:
        _BUDGET.reset(token)
    return "".join(pieces)


def render_values(values: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """A mapping whose string values are rendered as templates; other values stay as written."""
    return {
        name: render(value, context) if isinstance(value, str) else value
        for name, value in values.items()
    }
