"""The login rate limit of the console (sessions and CSRF are in `sessions`, machine tokens in
`tokens`; re-exported here so the app finds every authentication piece in one place).

The limit counts failures per (client address, user name) in a sliding window and locks
that pair out for a while once there are too many: a guesser is slowed to a few tries per
window without letting anyone lock a real operator out from every other address.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from streetwatch.console.sessions import (
    COOKIE_NAME,
    CookieSpec,
    Session,
    Sessions,
    load_secret,
    secret_path,
)
from streetwatch.console.tokens import TokenStore, TokenUser, tokens_path

__all__ = [
    "COOKIE_NAME",
    "CookieSpec",
    "LoginLimiter",
    "Session",
    "Sessions",
    "TokenStore",
    "TokenUser",
    "load_secret",
    "secret_path",
    "tokens_path",
]

MAX_TRACKED = 10_000
"""Pairs remembered at most, so a flood of made-up names cannot exhaust memory."""


@dataclass
class _Pair:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginLimiter:
    """`max_failures` failed logins within `window` seconds lock the pair for `lockout`
    seconds. Time is passed in (`now`, seconds), so tests need no sleeps; the app reads it
    from `clock`.

    Called from the event loop only (the login route is async): not thread-safe."""

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 15 * 60,
        lockout: float = 15 * 60,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`registry`: where the counters are exposed (the app's /metrics registry)."""
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.clock = clock
        self._pairs: OrderedDict[tuple[str, str], _Pair] = OrderedDict()
        self._trying: dict[tuple[str, str], int] = {}
        self.failures = Counter(
            "streetwatch_console_login_failures",
            "Failed console logins (wrong name or password, or tried while locked out)",
            registry=registry,
        )
        self.lockouts = Counter(
            "streetwatch_console_login_lockouts",
            "Times a (client address, user name) pair was locked out of console login",
            registry=registry,
        )

    def allowed(self, addr: str, name: str, now: float) -> bool:
        """May this pair try a password now? Check before verifying it (inside `trying`).
        Not while locked out, nor while the failures in the window and the tries still being
        checked reach the limit: parallel guesses must not all pass before one has failed."""
        key = _key(addr, name)
        pair = self._pairs.get(key)
        if pair is not None and now < pair.locked_until:
            return False
        recent = 0 if pair is None else sum(1 for t in pair.failures if t > now - self.window)
        return recent + self._trying.get(key, 0) < self.max_failures

    @contextmanager
    def trying(self, addr: str, name: str) -> Iterator[None]:
        """Around checking a password that `allowed` let through: the try is in flight."""
        key = _key(addr, name)
        self._trying[key] = self._trying.get(key, 0) + 1
        try:
            yield
        finally:
            left = self._trying.pop(key) - 1
            if left:
                self._trying[key] = left

    def refused(self, addr: str, name: str, now: float) -> None:
        """A try `allowed` refused (its password was not checked): counted as a failure,
        without extending a lock or filling the window."""
        del addr, name, now  # kept in the signature so the calls read alike
        self.failures.inc()

    def failed(self, addr: str, name: str, now: float) -> None:
        """Record a failed login; locks the pair when it reaches `max_failures`."""
        self.failures.inc()
        key = _key(addr, name)
        pair = self._pairs.pop(key, None) or _Pair()
        self._pairs[key] = pair  # most recent last
        if now < pair.locked_until:
            return
        while pair.failures and pair.failures[0] <= now - self.window:
            pair.failures.popleft()
        pair.failures.append(now)
        if len(pair.failures) >= self.max_failures:
            pair.locked_until = now + self.lockout
            pair.failures.clear()
            self.lockouts.inc()
        if len(self._pairs) > MAX_TRACKED:
            self._forget_one(now)

    def _forget_one(self, now: float) -> None:
        """Forget the stalest pair that is not locked (a flood of new names must not free a
        locked pair), or the stalest of all when every pair is locked."""
        stale = next((k for k, p in self._pairs.items() if p.locked_until <= now), None)
        if stale is None:
            self._pairs.popitem(last=False)
        else:
            del self._pairs[stale]

    def succeeded(self, addr: str, name: str, now: float) -> None:
        """A correct password: forget this pair's failures."""
        del now  # kept in the signature so the three calls read alike
        self._pairs.pop(_key(addr, name), None)


def _key(addr: str, name: str) -> tuple[str, str]:
    """Names are matched case-blind and cut short, so variants share one count."""
    return addr, name.casefold()[:128]
