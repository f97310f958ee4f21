"""Errors the domain raises. Each says what is wrong and what to fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class DomainError(Exception):
    """A rule of the domain refused an action."""


@dataclass(frozen=True)
class Problem:
    """One problem in a document, at a dotted path such as `nodes.route.cases[0].next`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def problems_of(check: Callable[[str], object], source: str, path: str) -> list[Problem]:
    """The problem `check` finds in `source` (it raises ExpressionError or TemplateError),
    at `path`; none when it passes."""
    try:
        check(source)
    except (ExpressionError, TemplateError) as error:
        return [Problem(path, str(error))]
    return []


class DefinitionInvalid(DomainError):
    """A workflow definition has one or more problems, each with its path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class CommandRejected(DomainError):
    """A command cannot be carried out; the reason goes back to whoever sent it."""


class WorkflowNotFound(CommandRejected):
    """No workflow of that name (or version) has been published for the tenant."""


class InputInvalid(CommandRejected):
    """A run's input does not match the workflow's `inputs` schema."""


class RunAlreadyExists(CommandRejected):
    """A run with the requested id exists already."""


class RunNotFound(CommandRejected):
    """No run with that id belongs to the tenant."""


class GraphEditRejected(CommandRejected):
    """An edit to a run's graph breaks a rule of running graphs; the message says which."""


class ForkRejected(CommandRejected):
    """A fork cannot start from the requested point; the message says why."""


class TaskInvalid(CommandRejected):
    """A task cannot be completed or reassigned like that; the message says why."""


class TaskForbidden(TaskInvalid):
    """The caller is neither the task's assignee nor in its role."""


class RunNotActive(CommandRejected):
    """The run is not in a state that allows the command (paused, finished...)."""


class SignalIgnored(CommandRejected):
    """No node of the run waits for the event that was sent."""


class NodeNotRunning(DomainError):
    """A result arrived for a node attempt that is not running (late or duplicate)."""


class ExpressionError(DomainError):
    """A CEL expression failed to compile or evaluate."""


class TemplateError(DomainError):
    """A prompt template failed to parse or render."""


class LlmRequestNotPending(DomainError):
    """A run-level model call was answered already, or its run is over."""


class ThreadNotFound(CommandRejected):
    """No thread with that id exists for the tenant."""


class ThreadInvalid(CommandRejected):
    """A thread refused a message or a completion (closed, unknown branch, ...)."""
