"""The console's ASGI app (FastAPI): pages at `/`, JSON under `/api/v1/` described at
`/api/openapi.json`, `/metrics`, `/healthz`, and the login that guards them.

FastAPI because its routes are typed with pydantic like the rest of the project, it writes the
OpenAPI description the fuzz tests and the case system read from those same types, and it runs
on uvicorn, a well-kept ASGI server that needs nothing else on the box.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from streetwatch.console import (
    cases,
    decisions,
    live,
    merchants,
    overview,
    rules,
    users_page,
    zones,
)
from streetwatch.console.context import ConsoleContext
from streetwatch.console.security import (
    GuardWebSockets,
    Principal,
    authenticate,
    principal,
    safe_next,
)
from streetwatch.console.sessions import COOKIE_NAME
from streetwatch.console.templating import STATIC, page

LOGIN_FIELD_MAX = 1024


class Me(BaseModel):
    name: str
    role: str
    via: str


def create_app(ctx: ConsoleContext) -> FastAPI:
    app = FastAPI(
        title="streetwatch console",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        description="The operator console's JSON API. People log in (a session cookie, and "
        "the CSRF token in X-CSRF-Token on every change); machines send "
        "`Authorization: Bearer <token>` (`streetwatch tokens add`).",
    )
    app.state.ctx = ctx
    app.middleware("http")(authenticate)
    app.add_middleware(GuardWebSockets)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """200 while every stage is healthy, 503 with the reason otherwise."""
        ok, detail = ctx.health()
        body = {"ok": ok, **detail}
        return JSONResponse(_jsonable(body), status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> Response:
        return page(request, "login.html", "login", next=safe_next(next))

    @app.post("/login", include_in_schema=False)
    async def login(
        request: Request,
        name: Annotated[str, Form(max_length=LOGIN_FIELD_MAX)],
        password: Annotated[str, Form(max_length=LOGIN_FIELD_MAX)],
        next: Annotated[str, Form(max_length=LOGIN_FIELD_MAX)] = "/",
    ) -> Response:
        addr = request.client.host if request.client else "?"
        now = ctx.limiter.clock()
        target = safe_next(next)
        if not ctx.limiter.allowed(addr, name, now):
            ctx.limiter.refused(addr, name, now)
            minutes = ctx.limiter.lockout / 60
            return page(
                request,
                "login.html",
                "login",
                status_code=429,
                error=f"too many failed logins: try again in {minutes:.0f} minutes",
                name=name,
                next=target,
            )
        with ctx.limiter.trying(addr, name):
            user = await run_in_threadpool(ctx.users.verify, name, password)
        if user is None:
            ctx.limiter.failed(addr, name, now)
            return page(
                request,
                "login.html",
                "login",
                status_code=401,
                error="wrong name or password",
                name=name,
                next=target,
            )
        ctx.limiter.succeeded(addr, name, now)
        response = RedirectResponse(target, status_code=303)
        spec = ctx.sessions.cookie(secure=ctx.config.console.secure_cookies)
        response.set_cookie(**spec.set_cookie_kwargs(ctx.sessions.issue(user)))  # type: ignore[arg-type]
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE_NAME, path="/")
        return response

    @app.get("/api/v1/me", tags=["session"])
    def me(who: Annotated[Principal, Depends(principal)]) -> Me:
        """Who the caller is and what role they have."""
        return Me(name=who.name, role=who.role.value, via=who.via)

    for module in (overview, live, zones, cases, decisions, rules, users_page, merchants):
        app.include_router(module.router)
    return app


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
