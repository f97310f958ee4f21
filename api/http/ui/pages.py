"""What every page of the UI shares: the templates, the route class that turns errors
into pages (another tenant's run is a 404 page, as on the API), the signed-in visitor,
forms checked against CSRF, and waiting for a command's outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from api.http.dependencies import Caller, Runtime, caller
from api.http.send import problems_of
from api.http.ui.session import BadForm, Sessions, SignInFirst, Visitor, check_csrf
from domain.commands import receipt_id
from handlers.unit_of_work import UnitOfWork
from infra.watermark import ProgressReader

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
DECISION_SECONDS = 5.0
"""How long a form waits for the intake to decide its command before showing `pending`."""
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none';"
    " form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class PageRoute(APIRoute):
    """A UI route: an error is a page (the API's reason on it), a visitor who is not
    signed in is sent to the sign-in page, and every answer carries the UI's security
    headers (no script or style from anywhere but the UI itself)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInFirst as refused:
                response = sign_in_redirect(request, refused.reason)
            except BadForm:
                response = error_page(
                    request, 403, "this form has expired (or came from elsewhere): reload the page"
                )
            except HTTPException as error:
                response = error_page(request, error.status_code, _detail(error.detail))
            except RequestValidationError as error:
                found = problems_of(error)  # type: ignore[arg-type]
                status = 404 if any(p["path"].startswith("path") for p in found) else 422
                response = error_page(request, status, _detail(found))
            response.headers.update(SECURITY_HEADERS)
            return response

        return page


def _detail(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(f"{p.get('path', '')}: {p.get('message', '')}" for p in detail)
    return str(detail)


def sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.ui_sessions
    return found


async def visitor(request: Request) -> Visitor:
    """The signed-in visitor (the sign-in page otherwise)."""
    return await sessions(request).visitor(request)


def who(visitor: Visitor) -> Caller:
    """The tenant and actor the visitor's commands are sent as."""
    return caller(visitor.key)


async def form_of(request: Request, visitor: Visitor = Depends(visitor)) -> dict[str, str]:
    """The fields of a POSTed form, once its CSRF token is checked."""
    form = await request.form()
    check_csrf(visitor.csrf, form.get("csrf"))
    return {name: value for name, value in form.items() if isinstance(value, str)}


def writer(visitor: Visitor = Depends(visitor)) -> Visitor:
    """A visitor whose key may change things (403 page otherwise)."""
    if not visitor.can_write:
        raise HTTPException(403, f"this API key lacks the 'write' scope (it has: "
                                 f"{', '.join(visitor.key.scopes)})")  # fmt: skip
    return visitor


def render(
    request: Request,
    template: str,
    visitor: Visitor | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page of the UI."""
    return templates.TemplateResponse(
        request, template, {"visitor": visitor, **context}, status_code=status_code
    )


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    """The page of an error, with the API's reason (and the menu, when signed in)."""
    you = getattr(request.state, "visitor", None)
    return render(request, "error.html", you, status, status=status, detail=detail)


def sign_in_redirect(request: Request, reason: str = "") -> Response:
    """To the sign-in page, and back here once signed in (a GET; a form goes to its page)."""
    back = request.url.path if request.method == "GET" else "/ui"
    if request.method == "GET" and request.url.query:
        back += "?" + request.url.query
    target = f"/ui/sign-in?next={quote(back, safe='')}"
    if reason:
        target += f"&reason={quote(reason, safe='')}"
    return RedirectResponse(target, status_code=303)


def see(path: str) -> RedirectResponse:
    """After a form: the page that shows what it did."""
    return RedirectResponse(path, status_code=303)


async def outcome(
    runtime: Runtime, tenant: str, command_id: str, wait: float = 0.0
) -> dict[str, Any]:
    """What became of a command: `pending` until the intake decides, then `accepted` or
    `rejected` with its reason; waits up to `wait` seconds for the decision, and for
    every read model to hold it."""
    deadline = time.monotonic() + wait
    while True:  # a unit of work per look: it keeps what it loaded, a missing receipt too
        receipt = await runtime.writer.run(
            UnitOfWork(runtime.store).get, receipt_id(tenant, command_id)
        )
        if receipt is not None:
            if wait:  # the page that follows shows the command's effect in the read models
                await caught_up(runtime, max(0.0, deadline - time.monotonic()))
            return dict(receipt.as_result())
        if time.monotonic() >= deadline:
            return {"command_id": command_id, "status": "pending", "reason": None}
        await asyncio.sleep(0.05)


async def caught_up(runtime: Runtime, seconds: float, position: int | None = None) -> None:
    """Wait (up to `seconds`) until every read model holds the store position `position`
    (its newest event by default): the page a form leads to then shows what it did."""
    async with ProgressReader(runtime) as reader:
        target = (await reader.read()).newest if position is None else position
        await reader.wait_for(target, seconds)
