"""API tokens for machines (the case system): bearer tokens shown once, stored as SHA-256.

A token is 256 random bits, so a plain SHA-256 suffices (no slow hash: there is nothing to
guess). The tokens file (`tokens.yaml`, beside the users file) is written atomically, 0600,
under a lock, and refused when group or others may write it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator

from ingest.config.common import Strict
from streetwatch.privatefile import PrivateFileError, locked, read_private, write_private
from streetwatch.users import Role, UserError, check_name, check_role

TOKEN_PREFIX = "swt_"
"""Makes a leaked token recognisable to secret scanners and in logs."""
MAX_TOKEN_CHARS = 256
TOKENS_NAME = "tokens.yaml"


def tokens_path(users_file: Path) -> Path:
    return Path(users_file).with_name(TOKENS_NAME)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenUser(Strict):
    """A machine identity. `name` shares no namespace with people: audit it as `token:NAME`."""

    name: str
    role: Role
    sha256: str = Field(repr=False, pattern=r"^[0-9a-f]{64}$")
    created: datetime

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        check_name(value)
        return value

    def allows(self, needed: Role) -> bool:
        return self.role.allows(needed)

    def public(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role.value, "created": self.created.isoformat()}


class TokensFile(Strict):
    version: int = Field(1, ge=1, le=1)
    tokens: list[TokenUser] = []  # noqa: RUF012 - pydantic copies field defaults


class TokenStore:
    """The tokens file at `path`; read afresh on every call, as the CLI may change it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def tokens(self) -> list[TokenUser]:
        return list(self._read().tokens)

    def add(self, name: str, role: str | Role) -> tuple[TokenUser, str]:
        """A new token for `name`: the stored entry, and the token itself (never stored)."""
        check_name(name)
        the_role = check_role(str(role))
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        entry = TokenUser(
            name=name,
            role=the_role,
            sha256=_digest(token),
            created=datetime.now(UTC).replace(microsecond=0),
        )
        with locked(self.path):
            current = self.tokens()
            if any(t.name.casefold() == name.casefold() for t in current):
                raise UserError(f"token {name!r} already exists")
            self._write([*current, entry])
        return entry, token

    def remove(self, name: str) -> None:
        check_name(name)
        with locked(self.path):
            current = self.tokens()
            kept = [t for t in current if t.name != name]
            if len(kept) == len(current):
                raise UserError(f"no token {name!r} in {self.path}")
            self._write(kept)

    def verify_token(self, bearer: str | None) -> TokenUser | None:
        """The token's identity, or None. Compares against every entry in constant time."""
        if not bearer or len(bearer) > MAX_TOKEN_CHARS or not bearer.startswith(TOKEN_PREFIX):
            return None
        wanted = _digest(bearer).encode()
        found = None
        for entry in self.tokens():
            if hmac.compare_digest(entry.sha256.encode(), wanted):
                found = entry
        return found

    def _read(self) -> TokensFile:
        try:
            text = read_private(self.path)
        except PrivateFileError as exc:
            raise UserError(str(exc)) from None
        if text is None:
            return TokensFile()
        try:
            data = yaml.safe_load(text)
            return TokensFile.model_validate(data if data is not None else {})
        except (yaml.YAMLError, ValidationError) as exc:
            reason = type(exc).__name__
            if isinstance(exc, ValidationError):
                first = exc.errors()[0]
                reason = ".".join(str(p) for p in first["loc"]) + f": {first['msg']}"
            raise UserError(f"{self.path}: unreadable tokens file ({reason})") from None

    def _write(self, tokens: list[TokenUser]) -> None:
        doc = TokensFile(tokens=tokens).model_dump(mode="json")
        write_private(
            self.path,
            "# The console's API tokens (SHA-256 only), written by `streetwatch tokens`.\n"
            + yaml.safe_dump(doc, sort_keys=False),
        )
