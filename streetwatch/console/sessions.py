"""Console sessions: signed cookie values, the cookie's attributes, and CSRF tokens.

A cookie value is `base64url(json claims).base64url(HMAC-SHA256)` under a key derived from a
per-box secret (`console.key`, 0600, beside the users file, made on first use). Nothing is kept
on the server, so `read` checks the claims against the users file every time: a removed user
(even one re-added under the same name), a changed role or a changed password ends it at once.
The cookie is signed, not encrypted: it carries nothing secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from streetwatch.privatefile import PrivateFileError, create_private, read_private
from streetwatch.users import Role, User, UserStore

COOKIE_NAME = "streetwatch_session"
DEFAULT_MAX_AGE = 8 * 3600
"""One shift: an operator logs in again each day."""
MAX_COOKIE_CHARS = 1024
"""Longer values are refused before any decoding."""
SECRET_NAME = "console.key"
_CLOCK_SKEW = 60


def secret_path(users_file: Path) -> Path:
    return Path(users_file).with_name(SECRET_NAME)


def load_secret(users_file: Path) -> bytes:
    """The box's console secret, created (32 random bytes, hex, 0600) on first use."""
    path = secret_path(users_file)
    if read_private(path, secret=True) is None:
        create_private(path, secrets.token_hex(32) + "\n")
    text = read_private(path, secret=True) or ""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < 32:
        raise PrivateFileError(f"{path}: not a console secret (64 hex digits); delete it")
    return key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(secret: bytes, purpose: bytes) -> bytes:
    """One key per use, so a CSRF token can never pass as a cookie signature or back."""
    return hmac.new(secret, b"streetwatch-console/" + purpose, hashlib.sha256).digest()


@dataclass(frozen=True)
class Session:
    name: str
    role: Role
    issued_at: int
    expires_at: int
    sid: str
    binding: str = field(default="", repr=False)
    """A keyed digest of the user's password hash when the session was issued."""

    def allows(self, needed: Role) -> bool:
        return self.role.allows(needed)


@dataclass(frozen=True)
class CookieSpec:
    """The session cookie's attributes, so the app cannot forget one."""

    max_age: int
    secure: bool
    name: str = COOKIE_NAME
    path: str = "/"
    http_only: bool = True
    same_site: str = "Strict"

    def header(self, value: str) -> str:
        """A `Set-Cookie` header value."""
        parts = [f"{self.name}={value}", f"Path={self.path}", f"Max-Age={self.max_age}"]
        parts += ["HttpOnly"] if self.http_only else []
        parts += [f"SameSite={self.same_site}"]
        parts += ["Secure"] if self.secure else []
        return "; ".join(parts)

    def clearing_header(self) -> str:
        """A `Set-Cookie` header value that logs the browser out."""
        return CookieSpec(0, self.secure, self.name, self.path).header("")

    def set_cookie_kwargs(self, value: str) -> dict[str, object]:
        """Keyword arguments for Starlette's `Response.set_cookie`."""
        return {
            "key": self.name,
            "value": value,
            "max_age": self.max_age,
            "path": self.path,
            "secure": self.secure,
            "httponly": self.http_only,
            "samesite": self.same_site.lower(),
        }


class Sessions:
    """Issues and reads session cookies for the users in `store`."""

    def __init__(self, store: UserStore, secret: bytes, max_age: int = DEFAULT_MAX_AGE) -> None:
        if len(secret) < 32:
            raise ValueError("the console secret must be at least 32 bytes")
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self.store = store
        self.max_age = max_age
        self._sign_key = _derive(secret, b"session")
        self._csrf_key = _derive(secret, b"csrf")

    @classmethod
    def for_store(cls, store: UserStore, max_age: int = DEFAULT_MAX_AGE) -> Sessions:
        """Sessions keyed by the secret beside the store's users file."""
        return cls(store, load_secret(store.path), max_age)

    def cookie(self, *, secure: bool) -> CookieSpec:
        """`secure`: the console is served over TLS (directly or behind a proxy)."""
        return CookieSpec(max_age=self.max_age, secure=secure)

    def issue(self, user: User, now: float | None = None) -> str:
        at = int(time.time() if now is None else now)
        claims = {
            "u": user.name,
            "r": user.role.value,
            "iat": at,
            "exp": at + self.max_age,
            "sid": secrets.token_urlsafe(18),
            "b": self._binding(user),
        }
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._sign(body)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session, or None when the value is forged, altered, expired, or its user was
        removed, changed role or changed password since it was issued."""
        session = self._verified(cookie)
        at = time.time() if now is None else now
        if session is None:
            return None
        # the lifetime configured now caps the one signed in: shortening it ends longer sessions
        expires = min(session.expires_at, session.issued_at + self.max_age)
        if not session.issued_at - _CLOCK_SKEW <= at < expires:
            return None
        user = self.store.get(session.name)
        if user is None or user.role is not session.role:
            return None
        if not hmac.compare_digest(self._binding(user).encode(), session.binding.encode()):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        """The token every state-changing request of this session must carry."""
        return _b64(hmac.new(self._csrf_key, session.sid.encode(), hashlib.sha256).digest())

    def check_csrf(self, session: Session, token: str | None) -> bool:
        if not token or len(token) > 128:
            return False
        return hmac.compare_digest(self.csrf_token(session).encode(), token.encode("utf-8"))

    def _binding(self, user: User) -> str:
        """Changes whenever the user's password hash does (new password, or a user removed and
        added again: argon2 salts every hash afresh). Keyed, so the cookie tells nothing of it."""
        record = f"{user.name}\0{user.hash}".encode()
        return _b64(hmac.new(self._sign_key, b"user\0" + record, hashlib.sha256).digest()[:16])

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._sign_key, body.encode("ascii"), hashlib.sha256).digest())

    def _verified(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or not cookie.isascii():
            return None
        body, dot, signature = cookie.partition(".")
        if not dot or not hmac.compare_digest(self._sign(body).encode(), signature.encode()):
            return None
        try:
            claims = json.loads(_unb64(body))
            return Session(
                name=str(claims["u"]),
                role=Role(claims["r"]),
                issued_at=int(claims["iat"]),
                expires_at=int(claims["exp"]),
                sid=str(claims["sid"]),
                binding=str(claims["b"]),
            )
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None  # signed by us but not our shape: a key reused elsewhere
