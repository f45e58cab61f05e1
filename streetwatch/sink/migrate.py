"""Schema migrations: versioned SQL files in `migrations/`, applied at start, idempotent.

`NNNN_name.sql` applies in both modes; `NNNN_name.timescale.sql` / `NNNN_name.plain.sql` are
the two variants of one version. All pending versions run in one transaction holding an
advisory lock, so two boxes starting together against one database take turns, and a failure
leaves the schema as it was. The mode a database was first migrated in is recorded and kept.

The mode of a new database is decided by `extension_plan` from what the server says
(pg_extension, pg_available_extensions, shared_preload_libraries); `CREATE EXTENSION` is only
ever tried on a separate connection, because a FATAL (`must be preloaded`) closes the
connection it happens on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

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


class Plan(StrEnum):
    USE = "use"
    """The extension is created in this database already."""
    CREATE = "create"
    """Try `CREATE EXTENSION` (on a connection of its own: a failure may close it)."""
    PLAIN = "plain"
    """Plain PostgreSQL, without trying: the reason says why."""


@dataclass(frozen=True)
class ExtensionFacts:
    """What the server says about timescaledb, read before anything is tried."""

    installed: str | None
    """extversion in this database's pg_extension, None when not created here."""
    available: bool
    """In pg_available_extensions: the server has the files."""
    preloaded: bool | None
    """In shared_preload_libraries; None when this role may not read the setting."""


def preloaded_libraries(value: str) -> set[str]:
    """The library names in a `shared_preload_libraries` value ('a, "$libdir/b"' -> {a, b})."""
    names = set()
    for item in value.split(","):
        name = item.strip().strip('"').strip()
        if name:
            names.add(name.rsplit("/", 1)[-1].removesuffix(".so"))
    return names


def extension_plan(facts: ExtensionFacts) -> tuple[Plan, str]:
    """Whether to use, create or do without TimescaleDB, and why (pure: no database here).

    An extension created in the database but not preloaded is an error rather than a fallback:
    the database is a TimescaleDB one, and any use of it fails until the server preloads it.
    """
    if facts.installed is not None:
        if facts.preloaded is False:
            raise RuntimeError(
                f"the timescaledb extension {facts.installed} is created in this database but "
                "not in the server's shared_preload_libraries: add it there and restart "
                "PostgreSQL"
            )
        return Plan.USE, f"timescaledb {facts.installed} is enabled in this database"
    if not facts.available:
        return Plan.PLAIN, "the timescaledb extension is not installed on the server"
    if facts.preloaded is False:
        return Plan.PLAIN, (
            "timescaledb is installed on the server but not in shared_preload_libraries "
            "(CREATE EXTENSION would fail with 'must be preloaded')"
        )
    return Plan.CREATE, "timescaledb is available and preloaded (or the setting is hidden)"


def read_facts(conn: psycopg.Connection) -> ExtensionFacts:
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    try:
        with conn.transaction():  # a savepoint inside the migration's transaction
            row = conn.execute("SHOW shared_preload_libraries").fetchone()
        preloaded: bool | None = "timescaledb" in preloaded_libraries(row[0] if row else "")
    except psycopg.errors.InsufficientPrivilege:
        preloaded = None
    return ExtensionFacts(_extension_version(conn), available is not None, preloaded)


CREATE_EXTENSION = "CREATE EXTENSION IF NOT EXISTS timescaledb"

Connect = Callable[[], psycopg.Connection]


def same_server(conn: psycopg.Connection) -> Connect:
    """A factory for another connection with `conn`'s parameters (password included)."""
    params = {
        opt.keyword.decode(): opt.val.decode() for opt in conn.pgconn.info if opt.val is not None
    }
    return lambda: psycopg.connect(make_conninfo(**params), autocommit=True)


def try_create_extension(connect: Connect) -> str | None:
    """`CREATE EXTENSION` on a connection of its own; None when it worked, else why not.

    Not on the migration's connection: `FATAL: extension "timescaledb" must be preloaded` (and
    any other FATAL) closes the connection it happens on. A failure to connect at all is raised:
    that is an outage to retry, not a reason to give up TimescaleDB for good.
    """
    probe = connect()
    try:
        probe.execute(CREATE_EXTENSION)
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    finally:
        with contextlib.suppress(Exception):
            probe.close()
    return None


def _detect_mode(conn: psycopg.Connection, connect: Connect) -> Mode:
    """TimescaleDB when the extension is enabled or can be; plain PostgreSQL otherwise."""
    plan, reason = extension_plan(read_facts(conn))
    if plan is Plan.USE:
        return Mode.TIMESCALE
    if plan is Plan.PLAIN:
        log.info("%s: plain PostgreSQL", reason)
        return Mode.PLAIN
    failed = try_create_extension(connect)
    if failed is not None:
        log.warning(
            "timescaledb is installed on the server but cannot be enabled (%s); is it in "
            "shared_preload_libraries? falling back to plain PostgreSQL",
            failed,
        )
        return Mode.PLAIN
    if _extension_version(conn) is None:  # pragma: no cover - the probe committed it
        raise RuntimeError("CREATE EXTENSION timescaledb succeeded but it is not in pg_extension")
    return Mode.TIMESCALE


def apply_migrations(
    conn: psycopg.Connection, folder: Path = MIGRATIONS, *, connect: Connect | None = None
) -> MigrationResult:
    """Bring the schema up to date (no-op when it is). Leaves `conn` idle, not in a transaction.

    `connect` opens the separate connection that tries `CREATE EXTENSION` (default: one with
    `conn`'s parameters).
    """
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
            mode = _detect_mode(conn, connect or same_server(conn))
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
