"""The console's users: names, roles and argon2id password hashes in one YAML file.

The file is the only state: written atomically (temp file, fsync, rename, 0600) under an
exclusive lock so the CLI and a running console never lose each other's changes. Hashes are
never printed; `verify` takes as long for an unknown name as for a wrong password, and
re-hashes a correct password whose hash was made with older argon2 parameters.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import Field, ValidationError, field_validator

from ingest.config.common import SAFE_ID, Strict
from ingest.config.console import MIN_PASSWORD_FLOOR
from streetwatch.privatefile import PrivateFileError, locked, read_private, write_private

MAX_PASSWORD_LENGTH = 1024
"""Longer passwords are refused: hashing megabytes per login attempt is a denial of service."""

_NAME = re.compile(SAFE_ID)


class Role(StrEnum):
    """What a user may do: a viewer reads, an operator also edits zones and reviews cases,
    an admin also edits users and rules. Each role includes the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


class UserError(ValueError):
    """A refused change or an unreadable users file; the message is the one-line reason."""


class User(Strict):
    name: str
    role: Role
    hash: str = Field(repr=False)
    created: datetime
    password_changed: datetime

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        check_name(value)
        return value

    @field_validator("hash")
    @classmethod
    def _argon2_only(cls, value: str) -> str:
        if not value.startswith("$argon2"):
            raise ValueError("not an argon2 hash")
        return value

    def public(self) -> dict[str, str]:
        """What may be shown: everything but the hash."""
        return {
            "name": self.name,
            "role": self.role.value,
            "created": self.created.isoformat(),
            "password_changed": self.password_changed.isoformat(),
        }


class UsersFile(Strict):
    version: int = Field(1, ge=1, le=1)
    users: list[User] = []  # noqa: RUF012 - pydantic copies field defaults


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise UserError(
            f"bad user name {name!r}: names are 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise UserError(f"unknown role {role!r} (one of {known})") from None


def check_password(password: str, min_length: int) -> None:
    if not password:
        raise UserError("the password is empty")
    if len(password) < min_length:
        raise UserError(f"the password is {len(password)} characters; the minimum is {min_length}")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")


@lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int, hash_len: int) -> str:
    """A hash no password matches, with the same parameters as real ones, so that verifying
    an unknown name costs what verifying a known one does."""
    hasher = PasswordHasher(time_cost, memory_cost, parallelism, hash_len)
    return hasher.hash(secrets.token_urlsafe(32))


class UserStore:
    """The users file at `path`. Every call sees the file as it is now (the CLI may change it
    while a console runs); it is parsed again only when its inode, size, times or mode changed,
    since the console looks a user up on every request."""

    def __init__(
        self,
        path: Path,
        *,
        min_password_length: int = 12,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.path = Path(path)
        self.min_password_length = max(min_password_length, MIN_PASSWORD_FLOOR)
        self.hasher = hasher or PasswordHasher()
        p = self.hasher
        self._dummy = _dummy_hash(p.time_cost, p.memory_cost, p.parallelism, p.hash_len)
        self._parsed: tuple[tuple[int, ...], UsersFile] | None = None

    # reading

    def users(self) -> list[User]:
        return list(self._read().users)

    def get(self, name: str) -> User | None:
        return next((u for u in self._read().users if u.name == name), None)

    def verify(self, name: str, password: str) -> User | None:
        """The user when `password` is theirs, else None (never says which of name or password
        was wrong). Re-hashes the password when the hasher's parameters have changed."""
        user = self.get(name) if _NAME.fullmatch(name) else None
        if user is None or len(password) > MAX_PASSWORD_LENGTH:
            with contextlib.suppress(VerificationError, InvalidHashError):
                self.hasher.verify(self._dummy, password[:MAX_PASSWORD_LENGTH])
            return None
        try:
            self.hasher.verify(user.hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if self.hasher.check_needs_rehash(user.hash):
            user = self._rehash(user, password)
        return user

    # changing

    def add(self, name: str, role: str | Role, password: str) -> User:
        check_name(name)
        the_role = check_role(str(role))
        check_password(password, self.min_password_length)
        digest = self.hasher.hash(password)
        now = _now()
        user = User(name=name, role=the_role, hash=digest, created=now, password_changed=now)
        with self._locked() as current:
            clash = next((u for u in current if u.name.casefold() == name.casefold()), None)
            if clash is not None:
                raise UserError(f"user {clash.name!r} already exists")
            self._write([*current, user])
        return user

    def remove(self, name: str) -> None:
        check_name(name)
        with self._locked() as current:
            kept = [u for u in current if u.name != name]
            if len(kept) == len(current):
                raise UserError(f"no user {name!r} in {self.path}")
            self._write(kept)

    def set_password(self, name: str, password: str) -> User:
        check_name(name)
        check_password(password, self.min_password_length)
        digest = self.hasher.hash(password)
        with self._locked() as current:
            user = next((u for u in current if u.name == name), None)
            if user is None:
                raise UserError(f"no user {name!r} in {self.path}")
            changed = user.model_copy(update={"hash": digest, "password_changed": _now()})
            self._write([changed if u.name == name else u for u in current])
        return changed

    def _rehash(self, user: User, password: str) -> User:
        """Store a hash with the current parameters, unless the password changed meanwhile."""
        fresh = user.model_copy(update={"hash": self.hasher.hash(password)})
        with self._locked() as current:
            if not any(u.name == user.name and u.hash == user.hash for u in current):
                return user
            self._write([fresh if u.name == user.name else u for u in current])
        return fresh

    # the file

    def _read(self) -> UsersFile:
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return UsersFile()
        except OSError:
            info = None
        key = (
            (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode)
            if info is not None
            else None
        )
        parsed = self._parsed
        if key is not None and parsed is not None and parsed[0] == key:
            return parsed[1]
        users = self._parse()
        if key is not None:
            self._parsed = (key, users)
        return users

    def _parse(self) -> UsersFile:
        try:
            text = read_private(self.path)
        except PrivateFileError as exc:
            raise UserError(
                f"{exc} (anyone who can write it could make themselves admin)"
                if "open to group" in str(exc)
                else str(exc)
            ) from None
        if text is None:
            return UsersFile()
        try:
            data = yaml.safe_load(text)
            return UsersFile.model_validate(data if data is not None else {})
        except (yaml.YAMLError, ValidationError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, ValidationError):
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                reason = f"{where}: {first['msg']}"
            raise UserError(f"{self.path}: unreadable users file ({reason})") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[User]]:
        """Hold the lock file while reading, changing and writing the users."""
        with locked(self.path):
            yield list(self._read().users)

    def _write(self, users: list[User]) -> None:
        doc = UsersFile(users=users).model_dump(mode="json")
        write_private(
            self.path,
            "# The operator console's users, written by `streetwatch users`: edit with it.\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
        )


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
