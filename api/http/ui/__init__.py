"""The web UI at `/ui`: server-rendered pages (Jinja2 templates, SVG graphs) over the
API's own reads and commands, with a little vanilla JavaScript that keeps them live (no
build step, no library). Signing in takes an API key once (api/http/ui/session.py); the
key's tenant, scopes and roles then decide what each page shows and offers, as on the
API. None of it is in the OpenAPI document.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from api.http.dependencies import Runtime, api_keys
from api.http.ui import ops, runs, tasks, threads, workflows
from api.http.ui.pages import HERE, PageRoute, render, see, sessions, visitor
from api.http.ui.session import SIGN_IN_COOKIE, BadForm, check_csrf, new_token, set_cookie
from infra.keys import KeyRefused

STATIC = {path.name: path for path in (HERE / "static").iterdir() if path.is_file()}


def routes(runtime: Runtime) -> APIRouter:
    """Every page of the UI, `/` sending a browser to it."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get("/")
    async def root() -> Response:
        return RedirectResponse("/ui", status_code=307)

    @router.get("/ui")
    async def home(request: Request) -> Response:
        await visitor(request)
        return see("/ui/runs")

    @router.get("/ui/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return HTMLResponse("not found", status_code=404)
        return FileResponse(STATIC[name], headers={"Cache-Control": "no-cache"})

    @router.get("/ui/sign-in", response_class=HTMLResponse)
    async def sign_in_form(
        request: Request,
        next: str = Query(default="/ui", max_length=2000),
        reason: str = Query(default="", max_length=500),
    ) -> Response:
        return sign_in_page(request, next, reason)

    def sign_in_page(request: Request, next: str, reason: str, status: int = 200) -> Response:
        token = new_token()
        response = render(
            request, "sign_in.html", None, status, csrf=token, next=safe_next(next),
            reason=reason,
        )  # fmt: skip
        set_cookie(request, response, SIGN_IN_COOKIE, token, 3600)
        return response

    @router.post("/ui/sign-in", response_class=HTMLResponse)
    async def sign_in(
        request: Request,
        key: str = Form(max_length=200),
        csrf: str = Form(max_length=100),
        next: str = Form(default="/ui", max_length=2000),
    ) -> Response:
        """Check the key as the API does; keep it in the session cookie, never in the page."""
        try:
            check_csrf(request.cookies.get(SIGN_IN_COOKIE, ""), csrf)
        except BadForm:
            return sign_in_page(request, next, "the form expired: paste the key again", 403)
        try:
            await api_keys(request).verify(key.strip())
        except KeyRefused as refused:
            return sign_in_page(request, next, str(refused), 401)
        response = see(safe_next(next))
        sessions(request).start(request, response, key.strip())
        return response

    @router.post("/ui/sign-out")
    async def sign_out(request: Request, csrf: str = Form(max_length=100)) -> Response:
        you = await visitor(request)
        check_csrf(you.csrf, csrf)
        response = see("/ui/sign-in?reason=signed+out")
        sessions(request).end(response)
        return response

    router.include_router(runs.routes(runtime))
    router.include_router(tasks.routes(runtime))
    router.include_router(threads.routes(runtime))
    router.include_router(workflows.routes(runtime))
    router.include_router(ops.routes(runtime))
    return router


def safe_next(path: str) -> str:
    """Where to go after signing in: a page of the UI only (never another site)."""
    return path if path.startswith("/ui") and not path.startswith("//") else "/ui"
