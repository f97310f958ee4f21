"""Prompt templates: Jinja2 in a sandbox with strict undefined variables.

A missing variable is an error, not an empty string, so a typo in a prompt fails the
node with a message instead of quietly sending the model half a prompt.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.nodes import Template as TemplateNode
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from domain.errors import TemplateError

MAX_TEMPLATE_LENGTH = 64 * 1024
MAX_RENDERED_LENGTH = 1024 * 1024

_ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def parse_template(source: str) -> TemplateNode:
    """Check a template's syntax; raises TemplateError with the line of the problem."""
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(f"template longer than {MAX_TEMPLATE_LENGTH} characters")
    try:
        return _ENVIRONMENT.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateError(f"line {error.lineno}: {error.message}") from None


@lru_cache(maxsize=2048)
def _compiled(source: str) -> Any:
    parse_template(source)
    return _ENVIRONMENT.from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    """Render a template against `context`; raises TemplateError naming what went wrong."""
    if "{" not in source:
        return source
    try:
        rendered = str(_compiled(source).render(context))
    except UndefinedError as error:
        raise TemplateError(f"undefined variable: {error.message}") from None
    except SecurityError as error:
        raise TemplateError(f"not allowed in a template: {error}") from None
    except TemplateError:
        raise
    except Exception as error:
        raise TemplateError(f"{type(error).__name__}: {error}") from None
    if len(rendered) > MAX_RENDERED_LENGTH:
        raise TemplateError(f"rendered text longer than {MAX_RENDERED_LENGTH} characters")
    return rendered


def render_values(values: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """A mapping whose string values are rendered as templates; other values stay as written."""
    return {
        name: render(value, context) if isinstance(value, str) else value
        for name, value in values.items()
    }
