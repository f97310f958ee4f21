"""What event routes show keys without the `admin` scope: the tenant's AI mode
(`ConfigureTenant`: model, system prompt, tools, credential) is the admin's, as at
`GET /v1/tenant/ai`, so its system prompt is redacted where events carry it: in threads
(`Thread.Opened`'s reply settings, the system message of each `ReplyRequested`) and in
the runs that answer threads in orchestrator mode (their graph and model requests, in
their events, replayed states and attempts)."""

from __future__ import annotations

from typing import Any, TypeVar

from domain.messages import Event
from domain.tenants import ORCHESTRATOR
from infra.keys import ApiKey

T = TypeVar("T")
REDACTED = "[redacted: system prompts of the tenant's AI mode need the admin scope]"


def hides_run(key: ApiKey, workflow: Any, version: Any) -> bool:
    """Whether `key` sees a run of `workflow` at `version` without its system prompts: a
    run answering a thread in orchestrator mode (version 0: no published workflow), for a
    key without `admin`."""
    return not key.allows("admin") and workflow == ORCHESTRATOR and version == 0


def hides_system_prompts(first: Event, key: ApiKey) -> bool:
    """Whether `key` sees the aggregate whose first event is `first` without its system
    prompts: a thread's, or an orchestrator run's, for a key without `admin`."""
    if first["type"].startswith("Thread."):
        return not key.allows("admin")
    return hides_run(key, first["data"].get("workflow"), first["data"].get("version"))


def without_system_prompts(value: Any) -> Any:
    """`value` with every system prompt replaced by `REDACTED`: a `system` string, and the
    content of a message whose role is `system`."""
    if isinstance(value, list):
        return [without_system_prompts(item) for item in value]
    if not isinstance(value, dict):
        return value
    redacted = {
        name: REDACTED
        if name == "system" and isinstance(text, str)
        else without_system_prompts(text)
        for name, text in value.items()
    }
    if redacted.get("role") == "system" and isinstance(redacted.get("content"), str):
        redacted["content"] = REDACTED
    return redacted


def shown_to(key: ApiKey, first: Event, value: T) -> T:
    """`value` (events, or a view made of them) as `key` may see the aggregate whose first
    event is `first`."""
    if hides_system_prompts(first, key):
        shown: T = without_system_prompts(value)
        return shown
    return value
