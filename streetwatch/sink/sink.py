"""The time-series sink: journal (and case store) → PostgreSQL/TimescaleDB, at least once,
idempotently, through database outages.

Each local source table (`readings` and `observations` in the journal, `case_events` in the
case store) is read by `seq` past a cursor. A batch goes in by binary COPY into a temporary
staging table and then `INSERT ... SELECT ... ON CONFLICT DO NOTHING` on the record's natural
key, so a batch shipped twice lands once.

Why the cursor lives in PostgreSQL, in the same transaction as the rows: the commit that makes
the rows visible is the commit that moves the cursor, so the two can never disagree. With the
cursor on the box, a crash between the database commit and the cursor write replays a batch
(harmless, thanks to the keys) — but the other order loses a batch, and a database restored
from a backup would be missing rows the box believes shipped. Here a restored database rewinds
its cursors with its data and the box ships the difference again.

While the database is unreachable the sink retries with exponential backoff (jittered) and
the journal keeps everything; when it returns, full batches are shipped back to back (no
flush pause) until the backlog is gone. A journal past `journal_warn_bytes` is warned about.
Records that cannot be stored (non-finite numbers, bad JSON, values the database refuses) are
recorded in `sink_rejects` with a reason, counted, and skipped; they never stall the sink.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from ingest.config import SiteConfig, Timeseries
from streetwatch.sink.migrate import MigrationResult, Mode, apply_migrations
from streetwatch.sink.policies import apply_policies, enforce_retention
from streetwatch.sink.records import (
    TABLES,
    CaseEventConverter,
    ObservationConverter,
    ReadingConverter,
    Reject,
)
from streetwatch.sink.stats import SinkStats

log = logging.getLogger("streetwatch.sink")

_REFUSED = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    UnicodeEncodeError,
)
"""Errors that belong to the rows of a batch, not to the connection: the batch is bisected."""
_CONNECTION = (psycopg.OperationalError, psycopg.InterfaceError)
RETENTION_EVERY_S = 3600.0
JOURNAL_CHECK_EVERY_S = 5.0


class Converter(Protocol):
    SELECT: str

    def key_of(self, row: tuple) -> str: ...

    def convert(self, row: tuple) -> tuple[str, tuple]: ...

    def select(self, tables: set[str]) -> str: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


@dataclass
class Source:
    """One local SQLite table read by seq; `cursor` mirrors the database's after each commit."""

    name: str
    path: Path
    table: str
    converter: Converter
    cursor: int = 0
    committed_state: Any = None
    """The converter's state right after the last committed batch (restored on a replay)."""
    prefetch: tuple[int, Future[_Batch]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _db: sqlite3.Connection | None = field(default=None, repr=False)
    _select: str | None = field(default=None, repr=False)

    def _open(self) -> sqlite3.Connection | None:
        """The file's connection once the file and the table exist (the case store may come
        later than the sink)."""
        if self._select is not None:
            return self._db
        if self._db is None:
            if not self.path.exists():
                return None
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA query_only=1")
            self._db = db
        tables = {
            name
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if self.table not in tables:
            return None
        self._select = self.converter.select(tables)
        return self._db

    def fetch(self, after: int, limit: int) -> list[tuple]:
        with self.lock:
            db = self._open()
            if db is None or self._select is None:
                return []
            return db.execute(self._select, (after, limit)).fetchall()

    def max_seq(self) -> int:
        with self.lock:
            db = self._open()
            if db is None:
                return 0
            return db.execute(f"SELECT coalesce(max(seq), 0) FROM {self.table}").fetchone()[0]

    def key_at(self, seq: int) -> str | None:
        rows = self.fetch(seq - 1, 1)
        return self.converter.key_of(rows[0]) if rows and rows[0][0] == seq else None

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None
                self._select = None


_Item = tuple[int, str, tuple]
"""(seq, table, row)"""


@dataclass
class _Refused:
    seq: int
    reason: str
    detail: str
    record: str


@dataclass
class _Batch:
    """A batch read and converted, ready to ship (possibly ahead of time, on the worker)."""

    rows: list[tuple]
    items: list[_Item]
    refused: list[_Refused]
    state_after: Any


def _copy_rows(cur: psycopg.Cursor, statement: sql.Composed, types: list[str], rows: list) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(types)
        write = copy.write_row
        for row in rows:
            write(row)


def _staging_sql(table: str) -> tuple[str, sql.Composed, sql.Composed, sql.Composed]:
    cols = TABLES[table]
    stage = sql.Identifier(f"stage_{table}")
    create = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
        stage,
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.stage_type)) for c in cols
        ),
    )
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        stage, sql.SQL(", ").join(sql.Identifier(c.name) for c in cols)
    )
    insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c.name) for c in cols),
        sql.SQL(", ").join(sql.SQL(c.expr) if c.expr else sql.Identifier(c.name) for c in cols),
        stage,
    )
    direct = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c.name) for c in cols)
    )
    return create.as_string(None), copy, insert, direct


class TimeseriesSink:
    """Ships the journal (and the case store) to PostgreSQL; see the module docstring.

    `start()`/`stop()` run it in a background thread; `drain_once()` is one synchronous step
    (one batch per source) for tests and the benchmark, and raises when the database is down.
    """

    def __init__(
        self,
        config: SiteConfig,
        journal_path: str | Path,
        case_store_path: str | Path | None = None,
        *,
        dsn: str | None = None,
        settings: Timeseries | None = None,
    ) -> None:
        self.settings = settings or config.timeseries or Timeseries()
        self.dsn = dsn if dsn is not None else self.settings.resolve_dsn()
        self.origin = self.settings.origin or config.site.id
        self.journal_path = Path(journal_path)
        bays = {d.id: d.bay for d in config.devices}
        self.sources = [
            Source("readings", self.journal_path, "readings", ReadingConverter(bays=bays)),
            Source("observations", self.journal_path, "observations", ObservationConverter()),
        ]
        if case_store_path is not None:
            self.sources.append(
                Source(
                    "case_events",
                    Path(case_store_path),
                    "case_events",
                    CaseEventConverter(self.origin),
                )
            )
        self.stats = SinkStats()
        self.mode: Mode | None = None
        self.migration: MigrationResult | None = None
        self._conn: psycopg.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sql = {table: _staging_sql(table) for table in TABLES}
        self._types = {table: [c.stage_type for c in cols] for table, cols in TABLES.items()}
        self._careful: set[str] = set()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="sink-prefetch")
        self._outage_since: float | None = None
        self._next_retention = 0.0
        self._next_journal_check = 0.0
        self._journal_warned_at = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="timeseries-sink", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the batch in flight, then close; unshipped rows stay in the journal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.close()

    def close(self) -> None:
        for source in self.sources:
            self._rewind(source)
        self._disconnect()
        for source in self.sources:
            source.close()
        self._worker.shutdown(wait=True)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="sink-prefetch")

    @staticmethod
    def _rewind(source: Source) -> None:
        """Forget batches converted but not committed: the converter goes back to its state
        after the last commit (vehicles' last fixes), so a re-read batch converts the same."""
        if source.prefetch is not None:
            source.prefetch[1].result()
            source.prefetch = None
        source.converter.restore(source.committed_state)

    def _run(self) -> None:
        settings = self.settings
        delay = settings.retry.min_delay_s
        while not self._stop.is_set():
            try:
                _handled, full = self._cycle()
            except _CONNECTION as exc:
                self._on_outage(exc, delay)
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(settings.retry.max_delay_s, delay * 2)
                continue
            except Exception:
                log.exception("timeseries sink: unexpected error; retrying in %.1f s", delay)
                self.stats.inc("errors")
                self._disconnect()
                self._stop.wait(delay)
                delay = min(settings.retry.max_delay_s, delay * 2)
                continue
            delay = settings.retry.min_delay_s
            if not full:
                self._stop.wait(settings.flush_interval_ms / 1000)

    def _on_outage(self, exc: BaseException, delay: float) -> None:
        self._disconnect()
        self.stats.inc("db_errors")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self.stats.set("outage", True)
            log.warning(
                "timeseries sink: database unreachable (%s); readings stay in the journal, "
                "retrying with backoff (next in %.1f s)",
                reason,
                delay,
            )
        else:
            log.info("timeseries sink: still unreachable (%s); next try in %.1f s", reason, delay)

    # -- connection ------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection:
        """Connect, migrate, set policies, create staging tables and load the cursors."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = psycopg.connect(
            self.dsn,
            autocommit=True,
            application_name=f"streetwatch-sink-{self.origin}",
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        try:
            if not self.settings.synchronous_commit:
                conn.execute("SET synchronous_commit = off")
            result = apply_migrations(conn)
            if self.mode is None or result.applied:
                log.info(
                    "timeseries sink: %s mode%s; schema at version %d%s",
                    "TimescaleDB" if result.mode is Mode.TIMESCALE else "plain PostgreSQL",
                    f" (timescaledb {result.timescale_version})"
                    if result.timescale_version
                    else " (no timescaledb extension: BRIN time indexes, plain views)",
                    result.current,
                    f", applied {result.applied}" if result.applied else "",
                )
            self.mode, self.migration = result.mode, result
            self.stats.set("mode", result.mode.value)
            apply_policies(conn, self.settings, result.mode)
            self._next_retention = time.monotonic() + RETENTION_EVERY_S
            for create, *_ in self._sql.values():
                conn.execute(create)  # type: ignore[arg-type]
            self._load_cursors(conn)
        except BaseException:
            conn.close()
            raise
        if self._outage_since is not None:
            log.warning(
                "timeseries sink: database back after %.0f s; draining the backlog (%d records)",
                time.monotonic() - self._outage_since,
                self.backlog(),
            )
            self._outage_since = None
            self.stats.set("outage", False)
        self._conn = conn
        self.stats.set("connected", True)
        self.stats.inc("connects")
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self.stats.set("connected", False)

    def _load_cursors(self, conn: psycopg.Connection) -> None:
        stored = {
            source: (seq, key)
            for source, seq, key in conn.execute(
                "SELECT source, seq, last_key FROM sink_cursors WHERE origin = %s", (self.origin,)
            ).fetchall()
        }
        for source in self.sources:
            self._rewind(source)
            seq, key = stored.get(source.name, (0, None))
            if seq > 0:
                local_max = source.max_seq()
                local_key = source.key_at(seq)
                if seq > local_max or (local_key is not None and local_key != key):
                    log.warning(
                        "timeseries sink: %s in %s does not match the database's cursor "
                        "(seq %d, key %s; local max seq %d): the local file was replaced; "
                        "shipping it from the start (keys make this safe)",
                        source.name,
                        source.path,
                        seq,
                        key,
                        local_max,
                    )
                    self.stats.inc("cursor_resets")
                    seq = 0
            source.cursor = seq

    # -- shipping --------------------------------------------------------------------------

    def drain_once(self) -> int:
        """Ship at most one batch per source; returns how many records were handled."""
        return self._cycle()[0]

    def drain(self, max_batches: int = 1_000_000) -> int:
        """Ship until every source is caught up (tests, benchmark)."""
        total = 0
        for _ in range(max_batches):
            handled, _ = self._cycle()
            total += handled
            if handled == 0:
                break
        return total

    def _cycle(self) -> tuple[int, bool]:
        now = time.monotonic()
        if now >= self._next_journal_check:  # before connecting: matters most in an outage
            self._next_journal_check = now + JOURNAL_CHECK_EVERY_S
            self._check_journal()
        conn = self.connect()
        handled = 0
        full = False
        limit = self.settings.batch_size
        for source in self.sources:
            batch = self._next_batch(source, limit)
            if not batch.rows:
                continue
            last = batch.rows[-1]
            if len(batch.rows) == limit:  # a backlog: read and convert the next batch meanwhile
                full = True
                source.prefetch = (last[0], self._worker.submit(self._prepare, source, last[0]))
            self._commit(
                conn, source, batch.items, batch.refused, last[0], source.converter.key_of(last)
            )
            source.committed_state = batch.state_after
            handled += len(batch.rows)
        now = time.monotonic()
        if self.mode is Mode.PLAIN and now >= self._next_retention:
            enforce_retention(conn, self.settings)
            self._next_retention = now + RETENTION_EVERY_S
        return handled, full

    def _next_batch(self, source: Source, limit: int) -> _Batch:
        if source.prefetch is not None:
            after, future = source.prefetch
            source.prefetch = None
            batch = future.result()
            if after == source.cursor:
                return batch
            source.converter.restore(source.committed_state)  # the batch before it failed
        return self._prepare(source, source.cursor)

    def _prepare(self, source: Source, after: int) -> _Batch:
        rows = source.fetch(after, self.settings.batch_size)
        convert = source.converter.convert
        items: list[_Item] = []
        refused: list[_Refused] = []
        for row in rows:
            try:
                table, out = convert(row)
            except Reject as exc:
                refused.append(_Refused(row[0], exc.reason, exc.detail, repr(row[1:])))
                continue
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                refused.append(_Refused(row[0], "bad_record", why, repr(row[1:])))
                continue
            items.append((row[0], table, out))
        return _Batch(rows, items, refused, source.converter.snapshot())

    def _commit(
        self,
        conn: psycopg.Connection,
        source: Source,
        items: list[_Item],
        refused: list[_Refused],
        last_seq: int,
        last_key: str,
    ) -> None:
        """One transaction: rows, rejects and the cursor. Rows the database refuses are found
        by bisecting the batch (each half its own transaction) and become rejects."""
        try:
            with conn.transaction():
                shipped = self._copy(conn, items)
                if refused:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO sink_rejects (origin, source, seq, reason, detail,"
                            " record) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                            [
                                (
                                    self.origin,
                                    source.name,
                                    r.seq,
                                    r.reason,
                                    r.detail,
                                    r.record[:2000].replace("\x00", "\\0"),
                                )
                                for r in refused
                            ],
                        )
                conn.execute(
                    "INSERT INTO sink_cursors (origin, source, seq, last_key) VALUES (%s, %s, %s,"
                    " %s) ON CONFLICT (origin, source) DO UPDATE SET seq = excluded.seq,"
                    " last_key = excluded.last_key, updated_at = now()",
                    (self.origin, source.name, last_seq, last_key.replace("\x00", "\\0")),
                )
        except _REFUSED as exc:
            if not items:
                raise
            if len(items) == 1:
                seq, _, row = items[0]
                why = str(exc).strip().splitlines()[0]
                refused = sorted(
                    [*refused, _Refused(seq, "database_refused", why, repr(row))],
                    key=lambda r: r.seq,
                )
                self._commit(conn, source, [], refused, last_seq, last_key)
                return
            mid = len(items) // 2
            cut = items[mid - 1][0]
            first = [r for r in refused if r.seq <= cut]
            self._commit(conn, source, items[:mid], first, cut, self._key_at(source, cut))
            rest = [r for r in refused if r.seq > cut]
            self._commit(conn, source, items[mid:], rest, last_seq, last_key)
            return
        source.cursor = last_seq
        for table, (staged, inserted) in shipped.items():
            self.stats.inc("rows_shipped", inserted)
            self.stats.inc(f"rows_shipped.{table}", inserted)
            self.stats.inc("duplicates", staged - inserted)
        self.stats.inc("batches")
        for r in refused:
            self.stats.reject(r.reason)
            log.warning(
                "timeseries sink: %s seq %d rejected: %s: %s",
                source.name,
                r.seq,
                r.reason,
                r.detail,
            )

    @staticmethod
    def _key_at(source: Source, seq: int) -> str:
        return source.key_at(seq) or ""

    def _copy(self, conn: psycopg.Connection, items: list[_Item]) -> dict[str, tuple[int, int]]:
        """COPY each table's rows straight into it, inside a savepoint. A unique violation
        means some rows are already there (a replay, another box): the savepoint is rolled back
        and the rows go through the staging table and `ON CONFLICT DO NOTHING` instead, which
        stays the way for that table until a batch comes through with no duplicate."""
        by_table: dict[str, list[tuple]] = defaultdict(list)
        for _, table, row in items:
            by_table[table].append(row)
        result = {}
        with conn.cursor() as cur:
            for table, rows in by_table.items():
                _, stage_sql, insert_sql, direct_sql = self._sql[table]
                types = self._types[table]
                if table not in self._careful:
                    try:
                        with conn.transaction():
                            _copy_rows(cur, direct_sql, types, rows)
                        result[table] = (len(rows), len(rows))
                        continue
                    except psycopg.errors.UniqueViolation:
                        self._careful.add(table)
                        self.stats.inc("replayed_batches")
                _copy_rows(cur, stage_sql, types, rows)
                cur.execute(insert_sql)
                result[table] = (len(rows), cur.rowcount)
                if cur.rowcount == len(rows):
                    self._careful.discard(table)
        return result

    # -- status ----------------------------------------------------------------------------

    def backlog(self) -> int:
        """Records in the local sources past the cursors (approximate: seq gaps count)."""
        total = 0
        for source in self.sources:
            try:
                total += max(0, source.max_seq() - source.cursor)
            except sqlite3.Error:
                continue
        return total

    def journal_bytes(self) -> int:
        size = 0
        for suffix in ("", "-wal"):
            path = self.journal_path.with_name(self.journal_path.name + suffix)
            try:
                size += path.stat().st_size
            except FileNotFoundError:
                continue
        return size

    def _check_journal(self) -> None:
        size = self.journal_bytes()
        backlog = self.backlog()
        self.stats.set("journal_bytes", size)
        self.stats.set("backlog", backlog)
        limit = self.settings.journal_warn_bytes
        if size < limit:
            self._journal_warned_at = 0
            return
        if self._journal_warned_at and size < self._journal_warned_at * 1.25:
            return
        self._journal_warned_at = size
        self.stats.inc("journal_warnings")
        log.warning(
            "timeseries sink: journal %s is %.1f MiB, past journal_warn_bytes (%.1f MiB); "
            "%d records wait to be shipped%s. Free disk or restore the database before the "
            "disk fills",
            self.journal_path,
            size / 2**20,
            limit / 2**20,
            backlog,
            " (database unreachable)" if self._outage_since is not None else "",
        )

    def status(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "mode": self.mode.value if self.mode else None,
            "cursors": {s.name: s.cursor for s in self.sources},
            "backlog": self.backlog(),
            "journal_bytes": self.journal_bytes(),
            **self.stats.snapshot(),
        }
