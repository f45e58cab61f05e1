"""Paged, filtered reads of the case store for the console's case list (fast at 100,000 cases).

How each filter stays an index lookup rather than a scan of the `violation` JSON:

- rule, state and the opened date are columns, indexed with `opened_at` after them
  (`cases_rule_opened`, `cases_state_opened`, `cases_opened` in `evidence.cases.SCHEMA`), so a
  filtered page in `opened_at` order is read straight off an index.
- zone lives in the JSON (`$.zone_id`, one value per case): an expression index on
  `json_extract(violation, '$.zone_id')` (`cases_zone`) serves it, as long as the query spells
  the expression exactly so.
- devices are a JSON *array*: no expression index can answer "contains". A side table
  `case_devices (device_id, opened_at, case_id)` holds one row per case and device. It is brought
  up to date on each query from the cases added since the last one (`rowid` beyond the mark kept
  in `case_query_marks`): cases are never deleted and their violation never changes, and SQLite
  gives a committed insert a rowid above every earlier one, so that mark is exact. Nothing in the
  pipeline has to know about the table.

The count of matching cases comes from the same indexes (`count(*)` over the index range), and
a page is limit/offset: at 100,000 cases the deepest offset walks an index of 100,000 entries,
a few milliseconds.

Reads use their own connection per thread (WAL: they never wait for the pipeline's writes, nor
for each other); only the side table's catch-up writes, briefly.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

from evidence.cases import CaseStore, State

MAX_PER_PAGE = 200
ZONE = "json_extract(violation, '$.zone_id')"
"""Spelt exactly as in the `cases_zone` expression index, or SQLite will not use it."""

SIDE_SCHEMA = """
CREATE TABLE IF NOT EXISTS case_devices (
    device_id TEXT NOT NULL,
    opened_at REAL NOT NULL,
    case_id   TEXT NOT NULL,
    PRIMARY KEY (device_id, opened_at, case_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS case_query_marks (
    name      TEXT PRIMARY KEY,
    last_rowid INTEGER NOT NULL
);
"""
_MARK = "case_devices"

LOOP_INDEXES = """
CREATE INDEX IF NOT EXISTS cases_repeat_of ON cases (repeat_of) WHERE repeat_of IS NOT NULL;
CREATE INDEX IF NOT EXISTS case_events_follow_up
    ON case_events (json_extract(data, '$.manifest_sha256')) WHERE event = 'follow_up';
"""
"""What the console's case page looks up besides a case's own rows: the cases that repeat it
(partial: most cases repeat none) and the follow-up package a manifest hash names (the link of
the package after it). Partial indexes are used only when a query spells their condition: a
literal `event = 'follow_up'`, and `repeat_of = ?`."""


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Every field optional; `since` inclusive, `until` exclusive."""

    rule: str | None = None
    state: str | None = None
    zone: str | None = None
    device: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.state is not None:
            State(self.state)  # ValueError for a state the life cycle does not have

    def conditions(self, cases: str = "", devices: str | None = None) -> tuple[list[str], list]:
        """SQL conditions and their parameters; `cases`/`devices` prefix the columns of the
        cases table and of `case_devices` (which then answers device and dates itself)."""
        parts: list[str] = []
        params: list[Any] = []
        zone = ZONE.replace("violation", f"{cases}violation")
        for column, value in ((f"{cases}rule_id", self.rule), (f"{cases}state", self.state)):
            if value:
                parts.append(f"{column} = ?")
                params.append(value)
        if self.zone:
            parts.append(f"{zone} = ?")
            params.append(self.zone)
        opened = f"{cases}opened_at"
        if self.device and devices is not None:
            parts.append(f"{devices}device_id = ?")
            params.append(self.device)
            opened = f"{devices}opened_at"
        elif self.device:
            parts.append(
                f"{cases}case_id IN (SELECT case_id FROM case_devices WHERE device_id = ?)"
            )
            params.append(self.device)
        if self.since is not None:
            parts.append(f"{opened} >= ?")
            params.append(self.since.timestamp())
        if self.until is not None:
            parts.append(f"{opened} < ?")
            params.append(self.until.timestamp())
        return parts, params


@dataclass(frozen=True, slots=True)
class CaseRow:
    """One line of the case list: the case's columns and the few facts of its violation."""

    case_id: str
    rule_id: str
    category: str
    state: str
    opened_at: datetime
    deadline: datetime | None
    escalated: bool
    zone: str | None
    zone_kind: str | None
    devices: list[str]
    party: str | None
    packaged: bool
    cleared_at: datetime | None = None
    escalation_level: int = 0
    repeat_of: str | None = None
    review: str | None = None

    @property
    def disposal_s(self) -> float | None:
        """Seconds from opening to the box seeing the situation end (None: not cleared)."""
        if self.cleared_at is None:
            return None
        return round((self.cleared_at - self.opened_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "rule_id": self.rule_id,
            "category": self.category,
            "state": self.state,
            "opened_at": self.opened_at.isoformat(),
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "escalated": self.escalated,
            "zone": self.zone,
            "zone_kind": self.zone_kind,
            "devices": self.devices,
            "party": self.party,
            "packaged": self.packaged,
            "cleared_at": None if self.cleared_at is None else self.cleared_at.isoformat(),
            "disposal_s": self.disposal_s,
            "escalation_level": self.escalation_level,
            "repeat_of": self.repeat_of,
            "review": self.review,
        }


@dataclass(frozen=True, slots=True)
class CasePage:
    items: list[CaseRow]
    total: int
    page: int
    per_page: int
    filters: CaseFilter = field(default_factory=CaseFilter)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


_ROW = (
    "SELECT case_id, rule_id, category, state, opened_at, deadline, escalated_at IS NOT NULL,"
    f" {ZONE}, json_extract(violation, '$.zone_kind'), json_extract(violation, '$.devices'),"
    " json_extract(violation, '$.party'), package IS NOT NULL, cleared_at, escalation_level,"
    " repeat_of, review"
)


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _row(row: tuple) -> CaseRow:
    devices = json.loads(row[9]) if row[9] else []
    return CaseRow(
        case_id=row[0],
        rule_id=row[1],
        category=row[2],
        state=row[3],
        opened_at=_ts(row[4]),  # type: ignore[arg-type]
        deadline=_ts(row[5]),
        escalated=bool(row[6]),
        zone=row[7],
        zone_kind=row[8],
        devices=[str(d) for d in devices] if isinstance(devices, list) else [],
        party=None if row[10] is None else str(row[10]),
        packaged=bool(row[11]),
        cleared_at=_ts(row[12]),
        escalation_level=int(row[13] or 0),
        repeat_of=row[14],
        review=row[15],
    )


class CaseQuery:
    """Read side of a case store (its file): `page(filter, page, per_page)` and the values the
    filters can take."""

    def __init__(self, store: CaseStore | str | Path) -> None:
        self.path = store.path if isinstance(store, CaseStore) else Path(store)
        self._local = threading.local()
        self._sync_lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []
        db = self._db()
        with self._sync_lock:
            db.executescript(SIDE_SCHEMA)
            # a store from before those columns gets no index (the lookups still answer)
            with contextlib.suppress(sqlite3.OperationalError):
                db.executescript(LOOP_INDEXES)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=5000")
            self._local.db = db
            with self._sync_lock:
                self._opened.append(db)
        return db

    def sync(self) -> int:
        """Bring `case_devices` up to date; returns how many cases it added."""
        db = self._db()
        top = db.execute("SELECT coalesce(max(rowid), 0) FROM cases").fetchone()[0]
        mark = db.execute(
            "SELECT last_rowid FROM case_query_marks WHERE name = ?", (_MARK,)
        ).fetchone()
        if mark is not None and mark[0] == top:
            return 0
        with self._sync_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                top = db.execute("SELECT coalesce(max(rowid), 0) FROM cases").fetchone()[0]
                row = db.execute(
                    "SELECT last_rowid FROM case_query_marks WHERE name = ?", (_MARK,)
                ).fetchone()
                last = 0 if row is None else row[0]
                if last > top:  # the cases table was replaced (a restored file): start over
                    db.execute("DELETE FROM case_devices")
                    last = 0
                added = db.execute(
                    "INSERT OR IGNORE INTO case_devices (device_id, opened_at, case_id)"
                    " SELECT DISTINCT CAST(j.value AS TEXT), c.opened_at, c.case_id FROM cases c,"
                    " json_each(c.violation, '$.devices') j WHERE c.rowid > ? AND c.rowid <= ?",
                    (last, top),
                ).rowcount
                db.execute(
                    "INSERT INTO case_query_marks (name, last_rowid) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET last_rowid = excluded.last_rowid",
                    (_MARK, top),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return added

    def page(self, filters: CaseFilter, page: int = 1, per_page: int = 50) -> CasePage:
        """Cases matching `filters`, newest first; `page` counts from 1.

        The page's keys are found first on an index alone (covering: no table row, no JSON is
        read for the rows an offset skips), then only those rows are read."""
        page = max(1, page)
        per_page = max(1, min(per_page, MAX_PER_PAGE))
        if filters.device:
            self.sync()
            parts, params = filters.conditions("c.", "d.")
            joined = filters.rule or filters.state or filters.zone
            source = "case_devices d" + (" JOIN cases c ON c.case_id = d.case_id" if joined else "")
            count_sql = f"SELECT count(*) FROM {source} WHERE {' AND '.join(parts)}"
            keys_sql = (
                f"SELECT d.case_id FROM {source} WHERE {' AND '.join(parts)}"
                " ORDER BY d.opened_at DESC, d.case_id DESC LIMIT ? OFFSET ?"
            )
            key = "case_id"
        else:
            parts, params = filters.conditions()
            where = f" WHERE {' AND '.join(parts)}" if parts else ""
            count_sql = f"SELECT count(*) FROM cases{where}"
            keys_sql = (
                f"SELECT rowid FROM cases{where} ORDER BY opened_at DESC, rowid DESC"
                " LIMIT ? OFFSET ?"
            )
            key = "rowid"
        db = self._db()
        db.execute("BEGIN")  # one snapshot for the count and the page
        try:
            total = db.execute(count_sql, params).fetchone()[0]
            keys = [r[0] for r in db.execute(keys_sql, [*params, per_page, (page - 1) * per_page])]
            rows = db.execute(
                f"{_ROW}, {key} FROM cases WHERE {key} IN ({','.join('?' * len(keys))})", keys
            ).fetchall()
        finally:
            db.execute("COMMIT")
        order = {k: i for i, k in enumerate(keys)}
        rows.sort(key=lambda r: order[r[-1]])
        return CasePage([_row(r) for r in rows], total, page, per_page, filters)

    def repeats_of(self, case_id: str, limit: int = 50) -> list[str]:
        """The cases whose situation repeats `case_id`'s, oldest first."""
        rows = self._db().execute(
            "SELECT case_id FROM cases WHERE repeat_of = ? ORDER BY opened_at LIMIT ?",
            (case_id, limit),
        )
        return [r[0] for r in rows]

    def follow_up_of(self, manifest_sha256: str) -> tuple[str, str] | None:
        """(case id, package folder) of the follow-up package whose manifest hashes so."""
        row = (
            self._db()
            .execute(
                "SELECT case_id, json_extract(data, '$.package') FROM case_events"
                " WHERE event = 'follow_up'"
                " AND json_extract(data, '$.manifest_sha256') = ? LIMIT 1",
                (manifest_sha256,),
            )
            .fetchone()
        )
        return None if row is None else (row[0], row[1])

    def rules(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT DISTINCT rule_id FROM cases ORDER BY 1")]

    def zones(self) -> list[str]:
        rows = self._db().execute(
            f"SELECT DISTINCT {ZONE} FROM cases WHERE {ZONE} IS NOT NULL ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    def devices(self) -> list[str]:
        self.sync()
        rows = self._db().execute("SELECT DISTINCT device_id FROM case_devices ORDER BY 1")
        return [r[0] for r in rows]

    def close(self) -> None:
        """Close every thread's connection (call once no query runs any more)."""
        with self._sync_lock:
            opened, self._opened = self._opened, []
        for db in opened:
            db.close()
        self._local = threading.local()


def parse_when(value: str | None, tz: tzinfo, *, end: bool = False) -> datetime | None:
    """A filter's time: ISO 8601 with or without an offset (without: the site's time zone), or
    a bare date, which as `end` (the `until` of a range) means the end of that day."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None and len(text) == 10:
        start = datetime.combine(day, time(0), tz)
        return start + timedelta(days=1) if end else start
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)
