"""Console authentication: signed sessions, CSRF, machine tokens and the login rate limit,
with real HMAC, real files, the real CLI and one real `streetwatch tokens add` process."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from prometheus_client import CollectorRegistry

from streetwatch.cli import cli
from streetwatch.console.limiter import (
    COOKIE_NAME,
    LoginLimiter,
    Sessions,
    TokenStore,
    load_secret,
    secret_path,
    tokens_path,
)
from streetwatch.privatefile import PrivateFileError, create_private
from streetwatch.users import Role, UserError, UserStore
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("keep_root_logging")

GOOD = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
STREETWATCH = [sys.executable, "-m", "streetwatch"]
T0 = 2_000_000_000.0
"""Injected time: nothing here sleeps."""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    users = UserStore(tmp_path / "var" / "users.yaml", hasher=CHEAP)
    users.add("alice", Role.OPERATOR, GOOD)
    users.add("bob", Role.VIEWER, GOOD)
    return users


@pytest.fixture
def sessions(store: UserStore) -> Sessions:
    return Sessions.for_store(store, max_age=3600)


def resign(cookie: str, sessions: Sessions, **changes: object) -> str:
    """The cookie with its claims changed and signed with a different key (a forger's)."""
    body, _, _ = cookie.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    raw = json.dumps(claims).encode()
    forged = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    other = Sessions(sessions.store, b"x" * 32)
    return f"{forged}.{other._sign(forged)}"


# the secret


def test_secret_is_made_once_0600_beside_the_users_file(store: UserStore) -> None:
    path = secret_path(store.path)
    assert path == store.path.parent / "console.key"
    assert not path.exists()
    first = load_secret(store.path)
    assert len(first) == 32
    assert mode(path) == 0o600
    assert load_secret(store.path) == first
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".console.key")]


def test_secret_readable_by_others_or_garbled_is_refused(store: UserStore) -> None:
    load_secret(store.path)
    path = secret_path(store.path)
    path.chmod(0o644)
    with pytest.raises(PrivateFileError, match="chmod 600"):
        load_secret(store.path)
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(PrivateFileError, match="not a console secret"):
        load_secret(store.path)


def test_racing_creators_agree_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "d" / "f"
    assert create_private(path, "first\n")
    assert not create_private(path, "second\n")
    assert path.read_text() == "first\n" and mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["f"]


# sessions


def test_issued_session_reads_back_until_it_expires(store: UserStore, sessions: Sessions) -> None:
    alice = store.get("alice")
    assert alice is not None
    cookie = sessions.issue(alice, now=T0)
    session = sessions.read(cookie, now=T0 + 10)
    assert session is not None
    assert (session.name, session.role) == ("alice", Role.OPERATOR)
    assert (session.issued_at, session.expires_at) == (int(T0), int(T0) + 3600)
    assert session.allows(Role.VIEWER) and not session.allows(Role.ADMIN)
    assert sessions.read(cookie, now=T0 + 3599) is not None
    assert sessions.read(cookie, now=T0 + 3600) is None
    assert sessions.read(cookie, now=T0 - 3600) is None  # issued in the future
    other = sessions.issue(alice, now=T0)
    assert other != cookie
    read_other = sessions.read(other, now=T0)
    assert read_other is not None and read_other.sid != session.sid


def test_tampered_or_foreign_cookies_are_refused(store: UserStore, sessions: Sessions) -> None:
    bob = store.get("bob")
    assert bob is not None
    cookie = sessions.issue(bob, now=T0)
    body, _, signature = cookie.partition(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for bad in [
        f"{body}.{flipped}",
        body,
        f"{body}.",
        "",
        None,
        cookie + "x" * 2000,
        resign(cookie, sessions, r="admin"),
        f"{resign(cookie, sessions, r='admin').partition('.')[0]}.{signature}",
        resign(cookie, sessions, exp=T0 + 10**9),
        "é." + signature,
    ]:
        assert sessions.read(bad, now=T0) is None, bad
    # the same users file but another box's secret
    assert Sessions(store, os.urandom(32)).read(cookie, now=T0) is None


def test_removed_user_role_change_and_new_password_end_sessions(
    store: UserStore, sessions: Sessions
) -> None:
    alice, bob = store.get("alice"), store.get("bob")
    assert alice is not None and bob is not None
    cookie_a = sessions.issue(alice, now=T0)
    cookie_b = sessions.issue(bob, now=T0)
    store.remove("bob")
    assert sessions.read(cookie_b, now=T0) is None
    store.add("bob", Role.VIEWER, GOOD)  # a new bob, password set now: the old cookie stays dead
    assert sessions.read(cookie_b, now=T0) is None
    store.remove("alice")
    store.add("alice", Role.ADMIN, GOOD)
    promoted = store.get("alice")
    assert promoted is not None
    assert sessions.read(cookie_a, now=T0) is None  # role changed
    fresh = sessions.issue(promoted, now=T0)
    assert sessions.read(fresh, now=T0) is not None
    store.set_password("alice", "another good password")
    assert sessions.read(fresh, now=T0) is None  # a new password logs every session out
    renewed = store.get("alice")
    assert renewed is not None
    assert sessions.read(sessions.issue(renewed, now=T0), now=T0) is not None


def test_cookie_attributes(sessions: Sessions) -> None:
    spec = sessions.cookie(secure=True)
    header = spec.header("v.s")
    assert header == (f"{COOKIE_NAME}=v.s; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure")
    assert "Secure" not in sessions.cookie(secure=False).header("v.s")
    assert spec.clearing_header() == (
        f"{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure"
    )
    assert spec.set_cookie_kwargs("v.s") == {
        "key": COOKIE_NAME,
        "value": "v.s",
        "max_age": 3600,
        "path": "/",
        "secure": True,
        "httponly": True,
        "samesite": "strict",
    }


# CSRF


def test_csrf_token_is_bound_to_its_session(store: UserStore, sessions: Sessions) -> None:
    alice = store.get("alice")
    assert alice is not None
    one = sessions.read(sessions.issue(alice, now=T0), now=T0)
    two = sessions.read(sessions.issue(alice, now=T0), now=T0)
    assert one is not None and two is not None
    token = sessions.csrf_token(one)
    assert sessions.csrf_token(one) == token
    assert sessions.check_csrf(one, token)
    assert not sessions.check_csrf(two, token)
    assert not sessions.check_csrf(one, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not sessions.check_csrf(one, "")
    assert not sessions.check_csrf(one, None)
    assert not sessions.check_csrf(one, "ü" * 10)
    assert not sessions.check_csrf(one, token * 10)
    # a CSRF token is no cookie signature
    assert token not in sessions.issue(alice, now=T0)


# API tokens


def test_token_store_keeps_only_the_hash_and_verifies(tmp_path: Path) -> None:
    tokens = TokenStore(tmp_path / "var" / "tokens.yaml")
    entry, token = tokens.add("case-system", "operator")
    assert token.startswith("swt_") and len(token) > 40
    text = tokens.path.read_text()
    assert token not in text
    assert hashlib.sha256(token.encode()).hexdigest() in text
    assert token not in repr(entry)
    assert mode(tokens.path) == 0o600
    found = tokens.verify_token(token)
    assert found is not None and (found.name, found.role) == ("case-system", Role.OPERATOR)
    assert found.allows(Role.OPERATOR) and not found.allows(Role.ADMIN)
    bare = token.removeprefix("swt_")
    for wrong in [token[:-1], token + "x", "", None, "swt_" + "a" * 300, bare]:
        assert tokens.verify_token(wrong) is None
    _, second = tokens.add("reporter", Role.VIEWER)
    assert second != token
    reporter = tokens.verify_token(second)
    assert reporter is not None and reporter.name == "reporter"
    with pytest.raises(UserError, match="already exists"):
        tokens.add("Case-System", "viewer")
    with pytest.raises(UserError, match="bad user name"):
        tokens.add("../x", "viewer")
    with pytest.raises(UserError, match="unknown role"):
        tokens.add("x", "root")
    tokens.remove("case-system")
    assert tokens.verify_token(token) is None
    with pytest.raises(UserError, match="no token"):
        tokens.remove("case-system")


def test_token_file_writable_by_others_is_refused(tmp_path: Path) -> None:
    tokens = TokenStore(tmp_path / "tokens.yaml")
    _, token = tokens.add("m", "viewer")
    tokens.path.chmod(0o666)
    with pytest.raises(UserError, match="chmod 600"):
        tokens.verify_token(token)
    tokens.path.chmod(0o600)
    tokens.path.write_text("tokens: [{name: m}]\n")
    with pytest.raises(UserError, match="unreadable tokens file"):
        tokens.tokens()


def site(tmp_path: Path) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text("site:\n  id: t\ndevices: []\n", encoding="utf-8")
    return path


def run_tokens(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["tokens", *args, "-c", str(config)])


def test_cli_add_list_remove(tmp_path: Path) -> None:
    config = site(tmp_path)
    added = run_tokens(config, "add", "case-system", "--role", "operator")
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    path = tokens_path(tmp_path / "var" / "users.yaml")
    assert TokenStore(path).verify_token(token) is not None
    assert "shown only now" in added.stderr
    listed = run_tokens(config, "list")
    assert listed.exit_code == 0
    assert listed.stdout.startswith("case-system\toperator\tcreated ")
    assert token not in listed.output
    as_json = json.loads(run_tokens(config, "list", "--json").stdout)
    assert [(t["name"], t["role"]) for t in as_json] == [("case-system", "operator")]
    again = run_tokens(config, "add", "case-system", "--role", "viewer")
    assert again.exit_code != 0 and "already exists" in again.output
    removed = run_tokens(config, "remove", "case-system")
    assert removed.exit_code == 0 and "removed token case-system" in removed.output
    assert TokenStore(path).verify_token(token) is None
    gone = run_tokens(config, "remove", "case-system")
    assert gone.exit_code != 0 and "no token" in gone.output


def test_real_command_prints_the_token_once_on_stdout(tmp_path: Path) -> None:
    config = site(tmp_path)
    done = subprocess.run(
        [*STREETWATCH, "tokens", "add", "cs", "--role", "operator", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("swt_")
    token = lines[0]
    assert token not in done.stderr
    path = tmp_path / "var" / "tokens.yaml"
    assert mode(path) == 0o600
    assert token not in path.read_text()
    assert TokenStore(path).verify_token(token) is not None


# login rate limit


def test_limiter_locks_after_failures_in_the_window_and_unlocks() -> None:
    registry = CollectorRegistry()
    limiter = LoginLimiter(max_failures=3, window=60, lockout=300, registry=registry)

    def count(name: str) -> float | None:
        return registry.get_sample_value(f"streetwatch_console_login_{name}_total")

    addr = "10.0.0.9"
    for at in (0, 10, 20):
        assert limiter.allowed(addr, "alice", T0 + at)
        limiter.failed(addr, "alice", T0 + at)
    assert not limiter.allowed(addr, "alice", T0 + 21)
    assert not limiter.allowed(addr, "ALICE", T0 + 21)  # names are matched case-blind
    assert limiter.allowed("10.0.0.8", "alice", T0 + 21)  # another address is not locked
    assert limiter.allowed(addr, "bob", T0 + 21)
    assert (count("failures"), count("lockouts")) == (3.0, 1.0)
    limiter.failed(addr, "alice", T0 + 100)  # tried while locked: counted, lock not extended
    assert count("failures") == 4.0
    assert not limiter.allowed(addr, "alice", T0 + 319)
    assert limiter.allowed(addr, "alice", T0 + 320)
    assert count("lockouts") == 1.0


def test_limiter_window_slides_and_success_forgets() -> None:
    limiter = LoginLimiter(max_failures=3, window=60, lockout=300)
    addr = "::1"
    limiter.failed(addr, "bob", T0)
    limiter.failed(addr, "bob", T0 + 30)
    limiter.failed(addr, "bob", T0 + 61)  # the first has left the window
    assert limiter.allowed(addr, "bob", T0 + 62)
    limiter.failed(addr, "bob", T0 + 62)  # three within 60 s now
    assert not limiter.allowed(addr, "bob", T0 + 63)
    limiter.failed(addr, "carol", T0)
    limiter.failed(addr, "carol", T0 + 1)
    limiter.succeeded(addr, "carol", T0 + 2)
    limiter.failed(addr, "carol", T0 + 3)
    limiter.failed(addr, "carol", T0 + 4)
    assert limiter.allowed(addr, "carol", T0 + 5)


def test_limiter_memory_is_bounded_and_a_flood_does_not_free_a_locked_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("streetwatch.console.limiter.MAX_TRACKED", 5)
    limiter = LoginLimiter(max_failures=2, window=60, lockout=300)
    limiter.failed("a", "alice", T0)
    limiter.failed("a", "alice", T0 + 1)
    for n in range(50):
        limiter.failed("b", f"user{n}", T0 + 2)
    assert len(limiter._pairs) == 5
    assert not limiter.allowed("a", "alice", T0 + 3)
