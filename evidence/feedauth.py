"""The case system's bearer token for the feed's HTTP requests (cases and escalations alike)."""

from __future__ import annotations

from ingest.config import EvidenceHttpFeed
from ingest.secrets import SecretError, read_secret


class MissingToken(Exception):
    """The feed names a token that cannot be read now: retry later (the message says why)."""


def with_bearer(http: EvidenceHttpFeed, headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus `Authorization: Bearer` when the feed names a token's variable."""
    if http.token_env:
        try:
            token = read_secret(http.token_env)
        except SecretError as exc:
            raise MissingToken(str(exc)) from None
        if not token:
            raise MissingToken(f"environment variable {http.token_env} (the token) is not set")
        headers["Authorization"] = f"Bearer {token}"
    return headers
