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

This module is the loop: connecting, cycling through the sources, outages, status. The parts:
`source.py` (local tables read by seq, batches converted ahead), `copier.py` (binary COPY,
straight or through staging), `commit.py` (one batch's transaction, bisected on refused rows),
`refresh.py` (late data and the continuous aggregates), `migrate.py` and `policies.py`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from ingest.config import SiteConfig, Timeseries
from streetwatch.sink.commit import _REFUSED, BatchWriter
from streetwatch.sink.copier import _copy_rows, _staging_sql
from streetwatch.sink.migrate import MigrationResult, Mode, apply_migrations
from streetwatch.sink.policies import apply_policies, enforce_retention
from streetwatch.sink.records import (
    CaseEventConverter,
    ObservationConverter,
    ReadingConverter,
)
from streetwatch.sink.refresh import refresh_pending
from streetwatch.sink.source import Batch, Converter, Item, Refused, Source
from streetwatch.sink.stats import SinkStats

__all__ = [
    "JOURNAL_CHECK_EVERY_S",
    "REFRESH_RETRY_S",
    "RETENTION_EVERY_S",
    "_REFUSED",
    "Converter",
    "Source",
    "TimeseriesSink",
    "_copy_rows",
    "_staging_sql",
]

log = logging.getLogger("streetwatch.sink")

_CONNECTION = (psycopg.OperationalError, psycopg.InterfaceError)
RETENTION_EVERY_S = 3600.0
JOURNAL_CHECK_EVERY_S = 5.0
REFRESH_RETRY_S = 300.0

# the names these had before the module was split
_Batch, _Item, _Refused = Batch, Item, Refused


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
        self._writer = BatchWriter(self.origin, self.stats)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="sink-prefetch")
        self._outage_since: float | None = None
        self._next_retention = 0.0
        self._next_journal_check = 0.0
        self._journal_warned_at = 0
        self._refresh_due = False
        self._next_refresh = 0.0

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
            source.rewind()
        self._disconnect()
        for source in self.sources:
            source.close()
        self._worker.shutdown(wait=True)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="sink-prefetch")

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

    def _open(self) -> psycopg.Connection:
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            application_name=f"streetwatch-sink-{self.origin}",
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )

    def connect(self) -> psycopg.Connection:
        """Connect, migrate, set policies, create staging tables and load the cursors."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = self._open()
        try:
            if not self.settings.synchronous_commit:
                conn.execute("SET synchronous_commit = off")
            result = apply_migrations(conn, connect=self._open)
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
            self._refresh_due = result.mode is Mode.TIMESCALE  # ranges a crash left behind
            self._writer.mode = result.mode
            self._writer.copier.create_staging(conn)
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
            source.rewind()
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
                source.prefetch = (last[0], self._worker.submit(source.prepare, last[0], limit))
            late = self._writer.commit(
                conn, source, batch.items, batch.refused, last[0], source.converter.key_of(last)
            )
            self._refresh_due = self._refresh_due or late
            source.committed_state = batch.state_after
            handled += len(batch.rows)
        now = time.monotonic()
        if self.mode is Mode.PLAIN and now >= self._next_retention:
            enforce_retention(conn, self.settings)
            self._next_retention = now + RETENTION_EVERY_S
        if self._refresh_due and not full and now >= self._next_refresh:
            self._refresh(conn)
        return handled, full

    def _refresh(self, conn: psycopg.Connection) -> None:
        """Refresh the continuous aggregates behind which late data landed (once caught up)."""
        try:
            done = refresh_pending(conn, self.origin)
        except _CONNECTION:
            raise
        except psycopg.Error as exc:
            self._next_refresh = time.monotonic() + REFRESH_RETRY_S
            self.stats.inc("refresh_errors")
            log.warning(
                "timeseries sink: refreshing continuous aggregates for late data failed (%s); "
                "retrying in %.0f s",
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                REFRESH_RETRY_S,
            )
            return
        self._refresh_due = False
        self.stats.inc("aggregate_refreshes", len(done))

    def _next_batch(self, source: Source, limit: int) -> Batch:
        if source.prefetch is not None:
            after, future = source.prefetch
            source.prefetch = None
            batch = future.result()
            if after == source.cursor:
                return batch
            source.converter.restore(source.committed_state)  # the batch before it failed
        return source.prepare(source.cursor, limit)

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
