"""Who is asking: every request but the public few carries a session cookie (people) or an
API token (machines); a session's state-changing requests also carry its CSRF token.

Enforced by one middleware for the whole app, so a route cannot be added without it (and its
twin for websocket connections, which an HTTP middleware never sees); roles are checked per
route by `require(role)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from streetwatch.console.sessions import COOKIE_NAME, Session
from streetwatch.users import Role

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/login", "/healthz", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    via: str
    """`session` (a person in a browser) or `token` (a machine)."""
    session: Session | None = None

    def allows(self, needed: Role) -> bool:
        return self.role.allows(needed)


def is_public(path: str, metrics_public: bool) -> bool:
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    return metrics_public and path == "/metrics"


def wants_json(path: str) -> bool:
    return path.startswith("/api/") or path in ("/metrics", "/healthz")


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this box only (no `//host`, no scheme)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target:
        return "/"
    return target


def identify(request: HTTPConnection) -> Principal | None:
    ctx = request.app.state.ctx
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = ctx.tokens.verify_token(value.strip())
        return None if token is None else Principal(token.name, token.role, "token")
    session = ctx.sessions.read(request.cookies.get(COOKIE_NAME))
    if session is None:
        return None
    return Principal(session.name, session.role, "session", session)


def _same_origin(request: HTTPConnection) -> bool:
    """A browser's cross-site request names its origin; ours must name this host."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return bool(host) and urlsplit(origin).netloc == host


async def authenticate(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """The middleware: 401 (API) or a redirect to the login page (pages) without a principal;
    403 for a session's unsafe request without its CSRF token or from another origin."""
    ctx = request.app.state.ctx
    path = request.url.path
    principal = identify(request)
    request.state.principal = principal
    if principal is None and not is_public(path, ctx.config.console.metrics_public):
        if wants_json(path) or request.method not in SAFE_METHODS:
            return JSONResponse(
                {"detail": "authentication required: log in, or send an API token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/login?next={quote(path + query, safe='/')}", status_code=303)
    if (
        principal is not None
        and principal.session is not None
        and request.method not in SAFE_METHODS
        and path != "/login"
    ):
        token = request.headers.get(CSRF_HEADER)
        if not _same_origin(request) or not ctx.sessions.check_csrf(principal.session, token):
            return JSONResponse(
                {"detail": f"CSRF check failed: send the page's token in {CSRF_HEADER}"},
                status_code=403,
            )
    return await call_next(request)


class GuardWebSockets:
    """`authenticate` for websocket connections: refused at the handshake (403) without a
    principal, or for a session whose browser is on another site (cross-site websocket
    hijacking). Plain ASGI, as `app.middleware("http")` passes websockets through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            connection = HTTPConnection(scope)
            who = identify(connection)
            if who is None or (who.session is not None and not _same_origin(connection)):
                await send({"type": "websocket.close", "code": 1008})
                return
            connection.state.principal = who
        await self.app(scope, receive, send)


def principal(request: HTTPConnection) -> Principal:
    """A route's dependency: the caller (the middleware has already refused anonymous ones)."""
    who = getattr(request.state, "principal", None)
    if who is None:
        raise HTTPException(401, "authentication required")
    return who


def require(role: Role) -> Callable[[HTTPConnection], Principal]:
    """A route's dependency: the caller, refused with 403 below `role`."""

    def dependency(request: HTTPConnection) -> Principal:
        who = principal(request)
        if not who.allows(role):
            raise HTTPException(403, f"{role.value} role needed; {who.name} is {who.role.value}")
        return who

    return dependency
