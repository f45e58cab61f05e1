"""One batch into PostgreSQL: rows, rejects and the source's cursor in one transaction."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import psycopg

from streetwatch.sink.copier import Copier
from streetwatch.sink.migrate import Mode
from streetwatch.sink.refresh import late_ranges, note_late
from streetwatch.sink.source import Item, Refused, Source
from streetwatch.sink.stats import SinkStats

log = logging.getLogger("streetwatch.sink")

_REFUSED = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    UnicodeEncodeError,
)
"""Errors that belong to the rows of a batch, not to the connection: the batch is bisected."""


class BatchWriter:
    def __init__(self, origin: str, stats: SinkStats) -> None:
        self.origin = origin
        self.stats = stats
        self.copier = Copier(stats)
        self.mode: Mode | None = None
        """Set at each connect; late data is noted for refreshes in TimescaleDB mode only."""

    def commit(
        self,
        conn: psycopg.Connection,
        source: Source,
        items: list[Item],
        refused: list[Refused],
        last_seq: int,
        last_key: str,
    ) -> bool:
        """One transaction: rows, rejects and the cursor. Rows the database refuses are found
        by bisecting the batch (each half its own transaction) and become rejects. True when
        late rows were noted for a continuous aggregate refresh (see refresh.py)."""
        try:
            with conn.transaction():
                shipped, spans = self.copier.copy(conn, items)
                late = late_ranges(spans, datetime.now(UTC)) if self.mode is Mode.TIMESCALE else []
                if late:
                    note_late(conn, self.origin, late)
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
                    [*refused, Refused(seq, "database_refused", why, repr(row))],
                    key=lambda r: r.seq,
                )
                return self.commit(conn, source, [], refused, last_seq, last_key)
            mid = len(items) // 2
            cut = items[mid - 1][0]
            first = [r for r in refused if r.seq <= cut]
            late = self.commit(conn, source, items[:mid], first, cut, source.key_at(cut) or "")
            rest = [r for r in refused if r.seq > cut]
            return self.commit(conn, source, items[mid:], rest, last_seq, last_key) or late
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
        return bool(late)
