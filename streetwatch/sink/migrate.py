"""Schema migrations: versioned SQL files in `migrations/`, applied at start, idempotent.

`NNNN_name.sql` applies in both modes; `NNNN_name.timescale.sql` / `NNNN_name.plain.sql` are
the two variants of one version. All pending versions run in one transaction holding an
advisory lock, so two boxes starting together against one database take turns, and a failure
leaves the schema as it was. The mode a database was first migrated in is recorded and kept.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psycopg

log = logging.getLogger("streetwatch.sink")

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_ID = 0x5357_5349_4E4B  # "SWSINK": any constant shared by every box
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|plain))?\.sql$")


class Mode(StrEnum):
    TIMESCALE = "timescale"
    PLAIN = "plain"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class MigrationResult:
    mode: Mode
    applied: list[int]
    current: int
    timescale_version: str | None


def migrations_for(mode: Mode, folder: Path = MIGRATIONS) -> list[Migration]:
    """The files that apply in `mode`, by version; a version with no file for it is an error."""
    by_version: dict[int, dict[str | None, Path]] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are NNNN_name[.timescale|.plain].sql")
        by_version.setdefault(int(match[1]), {})[match[3]] = path
    chosen = []
    for version, variants in sorted(by_version.items()):
        path = variants.get(None) or variants.get(mode.value)
        if path is None or (None in variants and len(variants) > 1):
            raise ValueError(f"migration {version:04d}: needs one common file or both variants")
        chosen.append(Migration(version, _NAME.match(path.name)[2], path))  # type: ignore[index]
    return chosen


def _extension_version(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    return None if row is None else row[0]


def _detect_mode(conn: psycopg.Connection) -> Mode:
    """TimescaleDB when the extension is installed or can be; plain PostgreSQL otherwise."""
    if _extension_version(conn) is not None:
        return Mode.TIMESCALE
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if available is None:
        return Mode.PLAIN
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        log.warning(
            "timescaledb is installed on the server but cannot be enabled (%s); is it in "
            "shared_preload_libraries? falling back to plain PostgreSQL",
            str(exc).strip().splitlines()[0],
        )
        return Mode.PLAIN
    return Mode.TIMESCALE


def apply_migrations(conn: psycopg.Connection, folder: Path = MIGRATIONS) -> MigrationResult:
    """Bring the schema up to date (no-op when it is). Leaves `conn` idle, not in a transaction."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, mode text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        recorded = conn.execute(
            "SELECT version, mode, checksum, name FROM schema_migrations ORDER BY version"
        ).fetchall()
        modes = {row[1] for row in recorded}
        if modes:
            mode = Mode(modes.pop())
            if mode is Mode.TIMESCALE and _extension_version(conn) is None:
                raise RuntimeError(
                    "the schema was created with TimescaleDB but the timescaledb extension is "
                    "missing from this database"
                )
        else:
            mode = _detect_mode(conn)
        done = {row[0]: row for row in recorded}
        applied = []
        for migration in migrations_for(mode, folder):
            if migration.version in done:
                if done[migration.version][2] != migration.checksum:
                    log.warning(
                        "migration %04d_%s changed since it was applied (checksum %s, now %s); "
                        "not re-applied",
                        migration.version,
                        migration.name,
                        done[migration.version][2],
                        migration.checksum,
                    )
                continue
            conn.execute(migration.sql)  # type: ignore[arg-type]
            conn.execute(
                "INSERT INTO schema_migrations (version, name, mode, checksum)"
                " VALUES (%s, %s, %s, %s)",
                (migration.version, migration.name, mode.value, migration.checksum),
            )
            applied.append(migration.version)
        current = max([*done, *applied], default=0)
        version = _extension_version(conn)
    return MigrationResult(mode, applied, current, version)
