"""The `console` section: who may log in to the operator console (issue 15)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ingest.config.common import Strict

MIN_PASSWORD_FLOOR = 8
"""No site may accept passwords shorter than this, whatever it sets."""


class Console(Strict):
    """Optional: a devices.yaml without it gets the defaults."""

    users_file: Path | None = None
    """Users, roles and argon2 password hashes (0600, written by `streetwatch users`);
    relative to devices.yaml; default <storage root>/users.yaml."""
    min_password_length: int = Field(12, ge=MIN_PASSWORD_FLOOR, le=1024)
    metrics_public: bool = True
    """/metrics answers without a session or token (a Prometheus scraper on the box's own
    network); false: scrapers send an API token as `Authorization: Bearer`."""
    secure_cookies: bool = False
    """Mark the session cookie `Secure`: set it when the console is served over TLS (directly
    or behind a reverse proxy)."""
    session_hours: float = Field(8.0, gt=0, le=24 * 7)
    """A session's absolute lifetime; the operator logs in again after it."""
    map_tiles: str | None = None
    """Optional tile URL template (`https://tiles.example/{z}/{x}/{y}.png`) for the zone
    editor's map of GPS zones and bays; without it the editor draws a plain coordinate plot."""

    def resolved(self, base: Path, storage_root: Path) -> Console:
        """`users_file` made absolute: explicit paths against devices.yaml's folder, the
        default under the (already resolved) storage root."""
        if self.users_file is None:
            path = storage_root / "users.yaml"
        elif self.users_file.is_absolute():
            path = self.users_file
        else:
            path = base / self.users_file
        return self.model_copy(update={"users_file": path})
