"""The Users page's API on a real server: admins only; add, new password, remove; each an
audit event; a removed user's session ends at once."""

from __future__ import annotations

import re

import httpx
import pytest

from ingest.config import load_config
from tests.conftest import REPO
from tests.consolekit import serve_console

PASSWORD = "a-long-enough-password"


@pytest.fixture
def console(tmp_path):
    server = serve_console(load_config(REPO / "devices.yaml"), tmp_path)
    server.ctx.users.add("ada", "admin", PASSWORD)
    server.ctx.users.add("vera", "viewer", PASSWORD)
    try:
        yield server
    finally:
        server.stop()


def logged_in(server, name):
    client = httpx.Client(base_url=server.url, timeout=30)
    assert client.post("/login", data={"name": name, "password": PASSWORD}).status_code == 303
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)
    client.headers["X-CSRF-Token"] = token
    return client


def test_admin_adds_resets_and_removes_users_each_audited(console):
    ada = logged_in(console, "ada")
    assert [u["name"] for u in ada.get("/api/v1/users").json()] == ["ada", "vera"]
    made = ada.post("/api/v1/users", json={"name": "otto", "role": "operator", "password": "x"})
    assert made.status_code == 400 and "the minimum is 12" in made.json()["detail"]
    made = ada.post(
        "/api/v1/users", json={"name": "otto", "role": "operator", "password": PASSWORD}
    )
    assert made.status_code == 201 and made.json()["role"] == "operator"
    otto = logged_in(console, "otto")
    assert otto.get("/api/v1/me").json()["role"] == "operator"
    assert ada.put("/api/v1/users/otto/password", json={"password": "b" * 14}).status_code == 200
    assert otto.get("/api/v1/me").status_code == 401  # a new password ends his sessions
    assert ada.delete("/api/v1/users/vera").status_code == 204
    assert ada.delete("/api/v1/users/vera").status_code == 404
    assert ada.delete("/api/v1/users/ada").status_code == 409
    audit = [e for e in console.ctx.cases.events() if e.event == "audit"]
    assert [(e.case_id, e.data["actor"], e.data["action"]) for e in audit] == [
        ("users/otto", "ada", "users.add"),
        ("users/otto", "ada", "users.password"),
        ("users/vera", "ada", "users.remove"),
    ]
    assert audit[2].data["before"] == {"role": "viewer"}


def test_viewers_and_operators_are_refused(console):
    vera = logged_in(console, "vera")
    assert vera.get("/api/v1/users").status_code == 403
    refused = vera.post(
        "/api/v1/users", json={"name": "eve", "role": "admin", "password": PASSWORD}
    )
    assert refused.status_code == 403 and "admin role needed" in refused.json()["detail"]
    assert vera.get("/users").status_code == 403
    assert "Users" not in vera.get("/").text.split("<main>")[0]
    assert console.ctx.users.get("eve") is None
