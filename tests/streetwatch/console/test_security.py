"""The console's HTTP security, over real HTTP against a real uvicorn server: nothing reachable
without a session or a token (every route the app has, derived from the app itself, so routes
added later are covered without touching this file), CSRF, expired and invalidated sessions,
the login rate limit, path traversal in every path parameter and the login's `next` redirect."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI, WebSocket
from starlette.routing import Mount, WebSocketRoute

from detectors.observation import GeoPoint, Observation, ObservationKind
from evidence.cases import CaseStore
from ingest.config import SiteConfig, load_config
from rules.violation import EvidenceSpec, Violation
from streetwatch.console import ConsoleServer, create_app
from streetwatch.console.sessions import COOKIE_NAME, Sessions
from streetwatch.users import UserStore
from tests.conftest import REPO
from tests.consolekit import console_context

PASSWORD = "console-test-pass-1"
USERS = {"ada": "admin", "otto": "operator", "vera": "viewer"}
CHEAP = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
"""Real argon2, cheap parameters: the tests log in many times."""
PUBLIC = {"/login", "/healthz", "/static"}
"""What the HTTP contract (DESIGN.md) lets anyone reach; /metrics too when configured so."""
SAFE = {"GET", "HEAD", "OPTIONS"}
EVIL = "evil.example"


# the console under test


def site(**console: Any) -> SiteConfig:
    config = load_config(REPO / "devices.yaml")
    return config.model_copy(update={"console": config.console.model_copy(update=console)})


def violation(n: int) -> Violation:
    at = datetime(2026, 11, 23, 8, 15, tzinfo=UTC) + timedelta(minutes=n)
    seen = Observation(
        ObservationKind.OCCUPANCY, "mag-1", "bay", f"fire-lane-{n}", at, at, state="occupied"
    )
    return Violation(
        rule_id="fire-lane-car",
        rule_name="Car in a fire lane",
        category="消防通道/占用",
        severity="high",
        site_id="demo-street",
        situation=f"fire-lane-{n}",
        opened_at=at,
        window_start=at - timedelta(seconds=30),
        window_end=at,
        devices=("mag-1",),
        subject="car",
        subject_id=f"fire-lane-{n}",
        location=GeoPoint(121.437, 31.1954),
        dispose_within=timedelta(minutes=15),
        evidence=EvidenceSpec(pre_s=5.0),
        thresholds={"dwell_s": 60},
        observations=(seen,),
    )


def case_store(folder: Path, count: int = 3) -> CaseStore:
    """A real case store with `count` open cases."""
    store = CaseStore(folder / "cases.sqlite")
    for n in range(count):
        store.open(violation(n))
    return store


def serve(
    folder: Path, prepare: Callable[[FastAPI], None] | None = None, **console: Any
) -> ConsoleServer:
    """A console on a free port with users ada (admin), otto (operator) and vera (viewer), a
    case store with three cases, and copies of the demo site and rules it may change;
    `prepare` may add routes to the app before it serves."""
    from streetwatch.demo import demo_rules

    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "devices.yaml"
    config_path.write_text((REPO / "devices.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    ctx = console_context(
        site(**console),
        folder,
        cases=case_store(folder),
        config_path=config_path,
        rules_dir=demo_rules(folder),
    )
    users = UserStore(ctx.users.path, hasher=CHEAP)
    ctx.users = users  # the same file; only cheaper to check passwords in
    ctx.sessions.store = users
    for name, role in USERS.items():
        users.add(name, role, PASSWORD)
    app = create_app(ctx)
    if prepare is not None:
        prepare(app)
    server = ConsoleServer(app, port=0).start()
    server.ctx = ctx  # type: ignore[attr-defined]
    server.app = app  # type: ignore[attr-defined]
    return server


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleServer]:
    server = serve(tmp_path / "console")
    try:
        yield server
    finally:
        server.stop()


def ctx_of(server: ConsoleServer) -> Any:
    return server.ctx  # type: ignore[attr-defined]


def client(server: ConsoleServer, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=False, **kwargs)


@dataclass(frozen=True)
class LoggedIn:
    cookie: str
    csrf: str

    def cookies(self) -> dict[str, str]:
        return {COOKIE_NAME: self.cookie}


def session_of(server: ConsoleServer, name: str, now: float | None = None) -> LoggedIn:
    """A session cookie as the login issues it (without the argon2 round trip), and its CSRF
    token."""
    ctx = ctx_of(server)
    user = ctx.users.get(name)
    assert user is not None
    cookie = ctx.sessions.issue(user, now=now)
    read = ctx.sessions.read(cookie, now=now)
    assert read is not None
    return LoggedIn(cookie, ctx.sessions.csrf_token(read))


def login(server: ConsoleServer, name: str, password: str = PASSWORD) -> tuple[httpx.Client, str]:
    """Logged in through POST /login, as a browser does; the client and its page's CSRF token."""
    http = client(server)
    response = http.post("/login", data={"name": name, "password": password})
    assert response.status_code == 303, response.text
    token = re.search(r'name="csrf-token" content="([^"]+)"', http.get("/").text)
    assert token, "the page carries no CSRF token"
    return http, token.group(1)


def bearer(server: ConsoleServer, role: str = "admin", name: str | None = None) -> dict[str, str]:
    _, token = ctx_of(server).tokens.add(name or f"machine-{role}", role)
    return {"Authorization": f"Bearer {token}"}


# every route of the app, from the app


@dataclass(frozen=True)
class Endpoint:
    path: str
    """The path template (`/api/v1/cases/{case_id}`)."""
    methods: frozenset[str]
    kind: str
    """`http`, `mount` (a mounted app: /static) or `websocket`."""
    params: tuple[tuple[str, str], ...] = ()
    """Path parameters and their convertor (`str`, `int`, `path`...)."""
    in_schema: bool = False

    def public(self, metrics_public: bool) -> bool:
        if metrics_public and self.path == "/metrics":
            return True
        return self.path in PUBLIC or self.path.startswith("/static/")

    def url(self, **values: str) -> str:
        """The path with each parameter filled (raw: the caller encodes what it must)."""
        path = self.path
        for name, kind in self.params:
            value = values.get(name, plausible(name, kind))
            path = re.sub(r"\{" + re.escape(name) + r"(:[^}]*)?\}", lambda _m, v=value: v, path)
        return path


def plausible(name: str, kind: str) -> str:
    """A value a real caller might send for a path parameter."""
    if kind == "int":
        return "1"
    if kind == "float":
        return "1.5"
    if kind == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    if kind == "path":
        return "console.css"
    lowered = name.lower()
    for hint, value in (
        ("case", "case-1"),
        ("camera", "cam-market-01"),
        ("device", "cam-market-01"),
        ("zone", "zone-1"),
        ("rule", "fire-lane-car"),
        ("user", "ada"),
        ("token", "machine-admin"),
    ):
        if hint in lowered:
            return value
    return "x"


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every route the app answers: its API routes, pages, mounts and websockets, including
    those of included routers (FastAPI >= 0.13x keeps them behind `_IncludedRouter`)."""
    try:
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # an older FastAPI flattens included routers into app.routes
        routes = list(app.routes)
    found = []
    for route in routes:
        original = getattr(route, "original_route", route)
        convertors = getattr(route, "param_convertors", {}) or {}
        params = tuple((n, _convertor_kind(c)) for n, c in convertors.items())
        path = getattr(route, "path", None)
        assert path is not None, f"a route without a path: {route!r}"
        in_schema = bool(getattr(route, "include_in_schema", False))
        if isinstance(original, Mount):
            found.append(
                Endpoint(path + "/{path}", frozenset({"GET", "HEAD"}), "mount", params, False)
            )
        elif isinstance(original, WebSocketRoute) or "WebSocket" in type(original).__name__:
            found.append(Endpoint(path, frozenset({"GET"}), "websocket", params, False))
        else:
            methods = frozenset(getattr(route, "methods", None) or {"GET"})
            found.append(Endpoint(path, methods, "http", params, in_schema))
    assert found, "the app has no routes"
    return found


def _convertor_kind(convertor: Any) -> str:
    name = type(convertor).__name__.lower()
    return name.removesuffix("convertor") or "str"


@pytest.fixture
def routes(console: ConsoleServer) -> list[Endpoint]:
    return endpoints(console.app)  # type: ignore[attr-defined]


def test_the_enumeration_sees_the_included_routers(routes: list[Endpoint]) -> None:
    paths = {e.path for e in routes}
    assert {"/", "/live", "/zones", "/cases", "/rules", "/api/v1/me", "/logout"} <= paths
    assert {"/api/openapi.json", "/static/{path}"} <= paths


# 1. nothing without authentication


def expect_anonymous(response: httpx.Response, endpoint: Endpoint, method: str, path: str) -> None:
    where = f"{method} {path}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
    if path.startswith("/api/") or path in ("/metrics", "/healthz") or method not in SAFE:
        assert response.status_code == 401, f"{where}: {response.status_code}, not 401"
        assert response.headers.get("www-authenticate") == "Bearer", where
        if method != "HEAD":
            assert response.json()["detail"].startswith("authentication required"), where
    else:
        assert response.status_code == 303, f"{where}: {response.status_code}, not a redirect"
        location = response.headers["location"]
        assert location.startswith("/login?next="), f"{where}: to {location}"


def anonymous_requests(
    routes: list[Endpoint], metrics_public: bool = True
) -> Iterator[tuple[Endpoint, str, str]]:
    """(endpoint, method, path) for every declared method of every non-public route, and one
    undeclared unsafe method each (refused before routing: 401, never 405)."""
    for endpoint in routes:
        if endpoint.kind == "websocket" or endpoint.public(metrics_public):
            continue
        path = endpoint.url()
        for method in sorted(endpoint.methods | {"DELETE"}):
            yield endpoint, method, path


BAD_CREDENTIALS = [
    "nothing",
    "garbage cookie",
    "unsigned cookie",
    "forged cookie",
    "expired cookie",
    "cookie of a removed user",
    "wrong bearer token",
    "bearer token of a removed machine",
    "basic auth",
]


def bad_credentials(server: ConsoleServer, kind: str) -> dict[str, Any]:
    """Request keyword arguments carrying credentials that must count for nothing."""
    ctx = ctx_of(server)
    admin = ctx.users.get("ada")
    if kind == "nothing":
        return {}
    if kind == "garbage cookie":
        return {"cookies": {COOKIE_NAME: "garbage"}}
    if kind == "unsigned cookie":
        body = base64.urlsafe_b64encode(json.dumps({"u": "ada", "r": "admin"}).encode()).decode()
        return {"cookies": {COOKIE_NAME: body.rstrip("=") + "."}}
    if kind == "forged cookie":
        # a well-formed cookie for ada the admin, signed with another box's key
        forger = Sessions(ctx.users, b"k" * 32, max_age=ctx.sessions.max_age)
        return {"cookies": {COOKIE_NAME: forger.issue(admin)}}
    if kind == "expired cookie":
        issued = time.time() - ctx.sessions.max_age - 60
        return {"cookies": {COOKIE_NAME: ctx.sessions.issue(admin, now=issued)}}
    if kind == "cookie of a removed user":
        users = ctx.users
        users.add("gone", "admin", PASSWORD)
        gone = users.get("gone")
        cookie = ctx.sessions.issue(gone)
        users.remove("gone")
        return {"cookies": {COOKIE_NAME: cookie}}
    if kind == "wrong bearer token":
        return {"headers": {"Authorization": "Bearer swt_" + "A" * 43}}
    if kind == "bearer token of a removed machine":
        headers = bearer(server, "admin", "retired")
        ctx.tokens.remove("retired")
        return {"headers": headers}
    if kind == "basic auth":
        return {"headers": {"Authorization": "Basic " + base64.b64encode(b"ada:x").decode()}}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", BAD_CREDENTIALS)
def test_no_route_answers_without_valid_credentials(
    console: ConsoleServer, routes: list[Endpoint], kind: str
) -> None:
    credentials = bad_credentials(console, kind)
    checked = 0
    with client(console, **credentials) as http:
        for endpoint, method, path in anonymous_requests(routes):
            expect_anonymous(http.request(method, path), endpoint, method, path)
            checked += 1
    assert checked >= 10


def test_public_routes_answer_anyone(console: ConsoleServer) -> None:
    with client(console) as http:
        assert http.get("/login").status_code == 200
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200  # metrics_public is the default
        css = http.get("/static/console.css")
        assert css.status_code == 200 and css.text.strip()
        assert http.get("/static/no-such-file.css").status_code == 404


def test_metrics_need_credentials_unless_public(tmp_path: Path) -> None:
    server = serve(tmp_path / "private", metrics_public=False)
    try:
        with client(server) as http:
            anonymous = http.get("/metrics")
            assert anonymous.status_code == 401
            assert "streetwatch_" not in anonymous.text
            scraper = http.get("/metrics", headers=bearer(server, "viewer"))
            assert scraper.status_code == 200
            assert "streetwatch_console_login_failures_total" in scraper.text
    finally:
        server.stop()


def test_anonymous_page_redirect_keeps_the_path_and_query(console: ConsoleServer) -> None:
    with client(console) as http:
        response = http.get("/cases?state=opened&x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=" + quote("/cases?state=opened&x=1", "/")


def test_the_app_guards_websocket_routes_too(tmp_path: Path) -> None:
    """A websocket route added later is behind the same login: the HTTP middleware alone never
    sees websocket connections."""
    import websocket  # websocket-client

    entered = []

    def add_socket(app: FastAPI) -> None:
        @app.websocket("/api/v1/test-socket")
        async def socket(ws: WebSocket) -> None:
            entered.append(ws.headers.get("origin"))
            await ws.accept()
            await ws.send_text("secret")
            await ws.close()

    server = serve(tmp_path / "ws", add_socket)
    try:
        assert "websocket" in {e.kind for e in endpoints(server.app)}  # type: ignore[attr-defined]
        url = server.url.replace("http://", "ws://") + "/api/v1/test-socket"
        person = session_of(server, "vera")
        for headers in (
            [],
            ["Authorization: Bearer swt_wrong"],
            [f"Cookie: {COOKIE_NAME}=x.y"],
            # a logged-in person's browser on another site (cross-site websocket hijacking)
            [f"Cookie: {COOKIE_NAME}={person.cookie}", f"Origin: https://{EVIL}"],
        ):
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                websocket.create_connection(url, timeout=10, header=headers, suppress_origin=True)
            assert refused.value.status_code in (401, 403), headers
        assert entered == []
        # the same socket for a logged-in person on this origin, and for a machine
        for headers in (
            [f"Cookie: {COOKIE_NAME}={person.cookie}", f"Origin: {server.url}"],
            [f"Authorization: {bearer(server, 'viewer')['Authorization']}"],
        ):
            ws = websocket.create_connection(url, timeout=10, header=headers, suppress_origin=True)
            assert ws.recv() == "secret"
            ws.close()
        assert len(entered) == 2
    finally:
        server.stop()


# 2. CSRF


def unsafe_routes(routes: list[Endpoint]) -> Iterator[tuple[str, str]]:
    """(method, path) of every state-changing route that needs a login."""
    for endpoint in routes:
        if endpoint.kind != "http" or endpoint.path == "/login":
            continue
        for method in sorted(endpoint.methods - SAFE):
            yield method, endpoint.url()


def test_every_change_needs_the_sessions_csrf_token(
    console: ConsoleServer, routes: list[Endpoint]
) -> None:
    ada = session_of(console, "ada")
    other = session_of(console, "ada")  # another session of the same person
    wrong = [
        {},
        {"X-CSRF-Token": ""},
        {"X-CSRF-Token": "A" * 43},
        {"X-CSRF-Token": other.csrf},
        {"X-CSRF-Token": ada.csrf[:-1]},
        {"X-CSRF-Token": ada.csrf, "Origin": f"https://{EVIL}"},
        {"X-CSRF-Token": ada.csrf, "Origin": f"http://{EVIL}:{console.address[1]}"},
        {"X-CSRF-Token": ada.csrf, "Origin": "null"},
    ]
    changes = list(unsafe_routes(routes))
    assert ("POST", "/logout") in changes
    with client(console, cookies=ada.cookies()) as http:
        for method, path in changes:
            for headers in wrong:
                response = http.request(method, path, headers=headers, json={})
                where = f"{method} {path} with {sorted(headers)}"
                assert response.status_code == 403, f"{where}: {response.status_code}"
                assert "CSRF" in response.json()["detail"], where
        # the right token, from this page's origin or with no Origin at all
        for headers in ({}, {"Origin": console.url}):
            response = http.post("/logout", headers={"X-CSRF-Token": ada.csrf, **headers})
            assert response.status_code == 200, response.text
            assert response.json() == {"ok": True}


def test_logged_in_through_the_form_the_page_token_works(console: ConsoleServer) -> None:
    http, token = login(console, "otto")
    with closing(http):
        assert http.get("/api/v1/me").json() == {
            "name": "otto",
            "role": "operator",
            "via": "session",
        }
        assert http.post("/logout").status_code == 403
        done = http.post("/logout", headers={"X-CSRF-Token": token})
        assert done.status_code == 200
        assert (
            COOKIE_NAME in done.headers["set-cookie"] and "Max-Age=0" in done.headers["set-cookie"]
        )
        assert http.get("/api/v1/me").status_code == 401  # the browser dropped the cookie


def test_machines_need_no_csrf_token(console: ConsoleServer, routes: list[Endpoint]) -> None:
    headers = bearer(console, "admin")
    with client(console, headers=headers) as http:
        assert http.post("/logout").status_code == 200
        assert http.get("/api/v1/me").json() == {
            "name": "machine-admin",
            "role": "admin",
            "via": "token",
        }
        for method, path in unsafe_routes(routes):
            response = http.request(method, path, json={})
            assert response.status_code != 403 or "CSRF" not in response.text, (method, path)
            assert response.status_code < 500, (method, path, response.text[:300])


def test_a_bearer_header_never_falls_back_to_the_cookie(console: ConsoleServer) -> None:
    ada = session_of(console, "ada")
    with client(console, cookies=ada.cookies()) as http:
        assert http.get("/api/v1/me").status_code == 200
        wrong = http.get("/api/v1/me", headers={"Authorization": "Bearer swt_nope"})
        assert wrong.status_code == 401


# 3. sessions end


def test_expired_session_is_anonymous(console: ConsoleServer) -> None:
    max_age = ctx_of(console).sessions.max_age
    for age in (max_age + 1, max_age + 3600, 10 * 365 * 86400):
        old = session_of(console, "ada", now=time.time() - age)
        with client(console, cookies=old.cookies()) as http:
            assert http.get("/api/v1/me").status_code == 401
            page = http.get("/zones")
            assert page.status_code == 303 and page.headers["location"].startswith("/login")
            assert http.post("/logout", headers={"X-CSRF-Token": old.csrf}).status_code == 401
    fresh = session_of(console, "ada", now=time.time() - max_age + 60)
    with client(console, cookies=fresh.cookies()) as http:
        assert http.get("/api/v1/me").status_code == 200


def test_a_shorter_configured_lifetime_ends_longer_sessions(console: ConsoleServer) -> None:
    sessions = ctx_of(console).sessions
    ada = session_of(console, "ada", now=time.time() - 2 * 3600)  # signed for 8 hours
    with client(console, cookies=ada.cookies()) as http:
        assert http.get("/api/v1/me").status_code == 200
        sessions.max_age = 3600  # the site now says one hour (as after a restart)
        assert http.get("/api/v1/me").status_code == 401


def test_password_change_or_removal_ends_the_users_sessions(console: ConsoleServer) -> None:
    ctx = ctx_of(console)
    otto_http, otto_token = login(console, "otto")
    vera_http, _ = login(console, "vera")
    machine = bearer(console, "operator", "otto")  # a token named like a person stays valid
    with closing(otto_http), closing(vera_http), client(console, headers=machine) as machine_http:
        assert otto_http.get("/api/v1/me").status_code == 200
        ctx.users.set_password("otto", "a brand new password 2")
        assert otto_http.get("/api/v1/me").status_code == 401
        assert otto_http.post("/logout", headers={"X-CSRF-Token": otto_token}).status_code == 401
        assert vera_http.get("/api/v1/me").status_code == 200
        assert machine_http.get("/api/v1/me").status_code == 200
        ctx.users.remove("vera")
        assert vera_http.get("/api/v1/me").status_code == 401
        ctx.users.add("vera", "viewer", PASSWORD)  # the same name again is someone new
        assert vera_http.get("/api/v1/me").status_code == 401
    again, _ = login(console, "otto", "a brand new password 2")
    with closing(again):
        assert again.get("/api/v1/me").json()["name"] == "otto"


# 4. the login rate limit


class Clock:
    """The limiter's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def metric(http: httpx.Client, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", http.get("/metrics").text, re.MULTILINE)
    assert found, name
    return float(found.group(1))


def test_wrong_passwords_lock_the_name_at_this_address(console: ConsoleServer) -> None:
    clock = Clock()
    limiter = ctx_of(console).limiter
    limiter.clock = clock
    failures = "streetwatch_console_login_failures_total"
    lockouts = "streetwatch_console_login_lockouts_total"
    with client(console) as http:
        before = metric(http, failures), metric(http, lockouts)
        for n in range(limiter.max_failures):
            clock.now += 10
            wrong = http.post("/login", data={"name": "ada", "password": f"wrong {n}"})
            assert wrong.status_code == 401, n
            assert "wrong name or password" in wrong.text
        clock.now += 10
        right = {"name": "ada", "password": PASSWORD, "next": "/cases"}
        locked = http.post("/login", data=right)
        assert locked.status_code == 429
        assert "too many failed logins" in locked.text
        assert COOKIE_NAME not in locked.headers.get("set-cookie", "")
        assert http.post("/login", data={**right, "name": "ADA"}).status_code == 429
        assert metric(http, failures) == before[0] + limiter.max_failures + 2
        assert metric(http, lockouts) == before[1] + 1
        # another name from the same address is not locked
        assert http.post("/login", data={"name": "otto", "password": PASSWORD}).status_code == 303
        # nor is the one minute before the lockout ends; it is after it
        clock.now += limiter.lockout - 60
        assert http.post("/login", data=right).status_code == 429
        clock.now += 60
        done = http.post("/login", data=right)
        assert done.status_code == 303 and done.headers["location"] == "/cases"
        assert http.get("/api/v1/me").json()["name"] == "ada"
        assert metric(http, lockouts) == before[1] + 1


def test_failures_older_than_the_window_do_not_count(console: ConsoleServer) -> None:
    clock = Clock()
    limiter = ctx_of(console).limiter
    limiter.clock = clock
    with client(console) as http:
        for _ in range(limiter.max_failures - 1):
            assert http.post("/login", data={"name": "vera", "password": "no"}).status_code == 401
        clock.now += limiter.window + 1
        for _ in range(limiter.max_failures - 1):
            assert http.post("/login", data={"name": "vera", "password": "no"}).status_code == 401
        ok = http.post("/login", data={"name": "vera", "password": PASSWORD})
        assert ok.status_code == 303


def test_parallel_guesses_do_not_outrun_the_limit(console: ConsoleServer) -> None:
    """Guesses sent at once must not all pass the limit before the first of them has failed:
    password checks are made slow (each waits for the others, up to a second)."""
    ctx = ctx_of(console)
    limiter = ctx.limiter
    limiter.clock = Clock()
    guesses = 3 * limiter.max_failures
    arrived = threading.Semaphore(0)
    verify = ctx.users.verify

    def slow_verify(name: str, password: str) -> Any:
        arrived.release()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and arrived._value < guesses:
            time.sleep(0.01)
        return verify(name, password)

    ctx.users.verify = slow_verify
    statuses: list[int] = []

    def guess(n: int) -> None:
        with client(console) as http:
            data = {"name": "ada", "password": f"guess {n}"}
            statuses.append(http.post("/login", data=data).status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [401] * limiter.max_failures + [429] * (
        guesses - limiter.max_failures
    )


# 5. path traversal


def traversal_values(folder: Path) -> list[str]:
    """Raw URL text (sent as is, not normalised) for one path parameter."""
    users = folder / "users.yaml"
    return [
        "..",
        "../../etc/passwd",
        "%2e%2e",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%2f" * 12 + "etc%2fpasswd",
        "..%5c..%5c",
        "..%5c..%5cetc%5cpasswd",
        "%252e%252e%252fetc%252fpasswd",
        "....//....//etc/passwd",
        "%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        quote(str(users), safe=""),
        "..%2fusers.yaml",
        "..%2f..%2fconsole.key",
        "%00",
        "x%00.json",
        "a" * 4000,
    ]


def leaks(body: bytes, folder: Path) -> list[str]:
    """What a response must never carry: files from outside what the route serves."""
    secret = (folder / "console.key").read_text().strip().encode()
    markers = {
        "/etc/passwd": b"root:",
        "a password hash": b"$argon2",
        "the console secret": secret,
        "Python source": b"def create_app",
        "a template": b"{% extends",
    }
    return [what for what, marker in markers.items() if marker in body]


def raw_request(
    server: ConsoleServer, method: str, target: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request with `target` exactly as given (httpx would resolve `..` first)."""
    host, port = server.address
    connection = HTTPConnection(host, port, timeout=30)
    try:
        body = None if method in SAFE else b"{}"
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, target, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def no_pipeline(server: ConsoleServer, status: int, body: bytes) -> bool:
    """The pipeline's routes answer 503 on a console started without `streetwatch run`."""
    return ctx_of(server).pipeline is None and status == 503 and b"no pipeline" in body


def test_no_path_parameter_reaches_outside(console: ConsoleServer, routes: list[Endpoint]) -> None:
    folder = ctx_of(console).users.path.parent
    ada = session_of(console, "ada")
    headers = {"Cookie": f"{COOKIE_NAME}={ada.cookie}", "X-CSRF-Token": ada.csrf}
    with_params = [e for e in routes if e.params and e.kind != "websocket"]
    assert any(e.kind == "mount" for e in with_params)
    tried = 0
    for endpoint in with_params:
        for value in traversal_values(folder):
            for name, _ in endpoint.params:
                target = endpoint.url(**{name: value})
                for method in sorted(endpoint.methods):
                    status, body = raw_request(console, method, target, headers)
                    where = f"{method} {target[:200]}"
                    assert status < 500 or no_pipeline(console, status, body), (
                        f"{where}: {status} {body[:300]!r}"
                    )
                    assert not leaks(body, folder), f"{where}: {leaks(body, folder)}"
                    tried += 1
    assert tried >= len(traversal_values(folder))


@pytest.mark.parametrize(
    "target",
    [
        "/static/../app.py",
        "/static/../security.py",
        "/static/../templates/base.html",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2fapp.py",
        "/static/..%5capp.py",
        "/static/....//app.py",
        "/static%2f..%2fapp.py",
        "/static/./../app.py",
        "/static//etc/passwd",
        "/static/%2Fetc%2Fpasswd",
        "/static/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static/../../console/app.py",
        "/static/console.css/../../app.py",
        "/static/console.css%00.py",
    ],
)
def test_static_files_do_not_leak_the_source(console: ConsoleServer, target: str) -> None:
    folder = ctx_of(console).users.path.parent
    ada = session_of(console, "ada")
    for headers in ({}, {"Cookie": f"{COOKIE_NAME}={ada.cookie}"}):
        status, body = raw_request(console, "GET", target, headers)
        assert status in (303, 400, 401, 404), f"{target}: {status}"
        assert not leaks(body, folder), target
        assert b"import " not in body and b"<html" not in body.lower(), target


# 6. the login's `next`


@pytest.mark.parametrize(
    ("asked", "lands"),
    [
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/\\evil", "/"),
        ("\\\\evil.example", "/"),
        ("/\\/evil.example", "/"),
        ("http:evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/\t/evil.example", "/"),
        (" //evil.example", "/"),
        ("///evil.example", "/"),
        ("evil.example", "/"),
        ("", "/"),
        ("/cases?state=opened", "/cases?state=opened"),
        ("/zones", "/zones"),
    ],
)
def test_login_next_stays_on_this_box(console: ConsoleServer, asked: str, lands: str) -> None:
    with client(console) as http:
        form = http.get("/login", params={"next": asked})
        assert form.status_code == 200
        hidden = re.search(r'name="next" value="([^"]*)"', form.text)
        assert hidden, form.text
        assert hidden.group(1).replace("&amp;", "&") == lands
        done = http.post("/login", data={"name": "vera", "password": PASSWORD, "next": asked})
    assert done.status_code == 303
    assert done.headers["location"] == lands


def test_a_wrong_password_keeps_only_a_safe_next(console: ConsoleServer) -> None:
    with client(console) as http:
        wrong = http.post(
            "/login", data={"name": "vera", "password": "nope", "next": "//evil.example"}
        )
    assert wrong.status_code == 401
    assert 'name="next" value="/"' in wrong.text
    assert EVIL not in wrong.text


# the OpenAPI description


def test_openapi_needs_credentials_and_describes_every_api_route(
    console: ConsoleServer, routes: list[Endpoint]
) -> None:
    with client(console) as http:
        anonymous = http.get("/api/openapi.json")
    assert anonymous.status_code == 401
    assert "paths" not in anonymous.text
    for credentials in (
        {"headers": bearer(console, "viewer")},
        {"cookies": session_of(console, "vera").cookies()},
    ):
        with client(console, **credentials) as http:
            described = http.get("/api/openapi.json")
        assert described.status_code == 200
    paths = described.json()["paths"]
    missing = [
        f"{method} {endpoint.path}"
        for endpoint in routes
        if endpoint.path.startswith("/api/v1/") and endpoint.kind == "http"
        for method in sorted(endpoint.methods - {"HEAD", "OPTIONS"})
        if method.lower() not in paths.get(re.sub(r"\{(\w+):[^}]*\}", r"{\1}", endpoint.path), {})
    ]
    assert not missing, f"API routes missing from /api/openapi.json: {missing}"
    assert "/api/v1/me" in paths
    assert not [p for p in paths if not p.startswith("/api/") and p != "/healthz"], sorted(paths)
