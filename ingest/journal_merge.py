"""The journals of ingest worker processes, read into the box's main journal.

With `streetwatch run --ingest-workers N` each worker process journals what it receives in a
journal of its own (and acknowledges it only after that commit); this reader copies their
readings, snapshots, dead letters and decisions into the main journal, which the analysis, the
evidence, the console and the sink read as before. Each source's read position is a cursor in
the main journal, written in the same transaction as the rows it covers, so a kill -9 anywhere
copies nothing twice and skips nothing; readings are keyed besides (a redelivery that two
workers both journaled is stored once), and an NMEA fix part is merged into its reading as the
journal does for parts that arrive in one process.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ingest.journal import Journal, _insert_rows
from ingest.journal_prune import Pruned, prune_rows
from ingest.readings import NMEA_SOURCES, GpsFix

_READINGS = (
    "SELECT seq, key, device_id, stream, kind, device_ts, received_ts, time_flag, data"
    " FROM readings WHERE seq > ? ORDER BY seq LIMIT ?"
)
_DEAD = (
    "SELECT id, received_ts, topic, reason, detail, payload, payload_size, key"
    " FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?"
)
_DECISIONS = (
    "SELECT seq, key, case_id, topic, received_ts, body FROM decisions WHERE seq > ?"
    " ORDER BY seq LIMIT ?"
)


@dataclass(slots=True)
class MergeCounts:
    readings: int = 0
    """Rows read from the sources (a duplicate of a stored key included)."""
    dead_letters: int = 0
    decisions: int = 0

    def __bool__(self) -> bool:
        return bool(self.readings or self.dead_letters or self.decisions)


class WorkerJournals:
    """Reads the worker journals at `paths` into `journal`; `merge_once` from one thread."""

    def __init__(self, journal: Journal, paths: list[Path]) -> None:
        self.journal = journal
        self.paths = list(paths)
        self._sources: dict[Path, sqlite3.Connection] = {}
        self._pruners: dict[Path, sqlite3.Connection] = {}

    def close(self) -> None:
        for db in (*self._sources.values(), *self._pruners.values()):
            db.close()
        self._sources.clear()
        self._pruners.clear()

    def prune(self, before: float, limit: int = 5000) -> Pruned:
        """Delete from the worker journals what this reader has copied (at or below its
        cursors) and was received before `before` (epoch seconds); the workers go on writing
        beside it (WAL, busy timeout)."""
        total = Pruned()
        for path in self.paths:
            if not path.exists():
                continue
            db = self._pruners.get(path)
            if db is None:
                db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA busy_timeout=5000")
                self._pruners[path] = db
            name = path.name
            db.execute("BEGIN IMMEDIATE")
            try:
                counts = prune_rows(
                    db,
                    before,
                    readings_upto=self.journal.cursor(f"merge:{name}:r"),
                    observations_upto=0,
                    dead_letters_upto=self.journal.cursor(f"merge:{name}:d"),
                    limit=limit,
                )
                db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                db.execute("ROLLBACK")
                if "no such" in str(exc):
                    continue  # the worker is creating its journal
                raise
            except BaseException:
                db.execute("ROLLBACK")
                raise
            total.add(counts)
        return total

    def _source(self, path: Path) -> sqlite3.Connection | None:
        db = self._sources.get(path)
        if db is None:
            if not path.exists():
                return None  # the worker has not started yet
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            self._sources[path] = db
        return db

    def merge_once(self, limit: int = 5000) -> MergeCounts:
        """Copy up to `limit` new rows of each kind from each source; returns what was read."""
        total = MergeCounts()
        for path in self.paths:
            db = self._source(path)
            if db is None:
                continue
            try:
                counts = self._merge(db, path.name, limit)
            except sqlite3.OperationalError as exc:
                if "no such" in str(exc):  # table or column
                    continue  # the worker is creating (or migrating) its journal
                raise
            total.readings += counts.readings
            total.dead_letters += counts.dead_letters
            total.decisions += counts.decisions
        return total

    def _merge(self, src: sqlite3.Connection, name: str, limit: int) -> MergeCounts:
        marks = {kind: self.journal.cursor(f"merge:{name}:{kind}") for kind in ("r", "d", "c")}
        with src:  # one read snapshot of the source
            readings = src.execute(_READINGS, (marks["r"], limit)).fetchall()
            snapshots = [r[1] for r in readings if r[4] == "snapshot"]
            marks_in = ",".join("?" * len(snapshots))
            images = (
                src.execute(
                    f"SELECT key, jpeg FROM snapshots WHERE key IN ({marks_in})", snapshots
                ).fetchall()
                if snapshots
                else []
            )
            dead = src.execute(_DEAD, (marks["d"], limit)).fetchall()
            decisions = src.execute(_DECISIONS, (marks["c"], limit)).fetchall()
        counts = MergeCounts(len(readings), len(dead), len(decisions))
        if not counts:
            return counts
        plain: list[tuple] = []
        parts: list[tuple[tuple, GpsFix]] = []
        for row in readings:
            fix = _nmea_part(row)
            if fix is None:
                plain.append(row[1:])
            else:
                parts.append((row[1:], fix))
        with self.journal._transaction() as db:
            if plain:
                _insert_rows(db, plain)
            for row, fix in parts:
                Journal._insert_part(db, row, fix)
            if images:
                db.executemany("INSERT OR IGNORE INTO snapshots (key, jpeg) VALUES (?, ?)", images)
            for _, *letter, key in dead:
                if key is None:
                    db.execute(
                        "INSERT INTO dead_letters (received_ts, topic, reason, detail, payload,"
                        " payload_size) VALUES (?, ?, ?, ?, ?, ?)",
                        letter,
                    )
                else:
                    db.execute(
                        "INSERT OR IGNORE INTO dead_letters (received_ts, topic, reason, detail,"
                        " payload, payload_size, key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*letter, key),
                    )
            if decisions:
                db.executemany(
                    "INSERT OR IGNORE INTO decisions (key, case_id, topic, received_ts, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [row[1:] for row in decisions],
                )
            for kind, rows in (("r", readings), ("d", dead), ("c", decisions)):
                if rows:
                    db.execute(
                        "INSERT INTO cursors (name, seq) VALUES (?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                        (f"merge:{name}:{kind}", rows[-1][0]),
                    )
        return counts


def _nmea_part(row: tuple) -> GpsFix | None:
    """The fix of an NMEA reading (a part that may need merging), else None."""
    if row[4] != "gps" or '"nmea' not in row[8]:
        return None
    try:
        fix = GpsFix(**json.loads(row[8]))
    except (TypeError, ValueError):
        return None
    return fix if fix.source in NMEA_SOURCES else None
