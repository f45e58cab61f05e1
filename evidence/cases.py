"""The case store (SQLite): the enforcement life cycle of each case, every step time-stamped.

```
opened → evidence_complete → submitted → acknowledged → confirmed → notified → rectified → closed
                                                      ↘ rejected ─────────────────────────↗
```
`submitted`: queued in the feed's outbox; `acknowledged`: the case system took it;
`confirmed`/`rejected`: the reviewer's decision. Every transition and every escalation (the
disposal deadline passed with the case still open) is a row in `case_events`, which the
TimescaleDB sink ships by `seq`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from evidence.package import case_id_of
from rules.violation import Violation


class State(StrEnum):
    OPENED = "opened"
    EVIDENCE_COMPLETE = "evidence_complete"
    SUBMITTED = "submitted"
    ACKNOWLEDGED = "acknowledged"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    NOTIFIED = "notified"
    RECTIFIED = "rectified"
    CLOSED = "closed"


NEXT: dict[State, tuple[State, ...]] = {
    State.OPENED: (State.EVIDENCE_COMPLETE,),
    State.EVIDENCE_COMPLETE: (State.SUBMITTED,),
    State.SUBMITTED: (State.ACKNOWLEDGED,),
    State.ACKNOWLEDGED: (State.CONFIRMED, State.REJECTED),
    State.CONFIRMED: (State.NOTIFIED,),
    State.NOTIFIED: (State.RECTIFIED,),
    State.RECTIFIED: (State.CLOSED,),
    State.REJECTED: (State.CLOSED,),
    State.CLOSED: (),
}
FINAL = (State.CLOSED,)
NOT_ESCALATED = (State.REJECTED, State.RECTIFIED, State.CLOSED)
"""States in which a passed disposal deadline no longer matters."""
ESCALATED = "escalated"
AUDIT = "audit"
"""Event name of an operator's change made in the console (`CaseStore.audit`)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    case_id         TEXT PRIMARY KEY,
    violation_id    TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    category        TEXT NOT NULL,
    site_id         TEXT NOT NULL,
    opened_at       REAL NOT NULL,
    deadline        REAL,
    escalated_at    REAL,
    package         TEXT,
    manifest_sha256 TEXT,
    updated_at      REAL NOT NULL,
    violation       TEXT NOT NULL,
    chain_seq       INTEGER,
    acked_at        REAL,
    ack_ref         TEXT
);
CREATE INDEX IF NOT EXISTS cases_state ON cases (state);
CREATE INDEX IF NOT EXISTS cases_opened ON cases (opened_at);
CREATE INDEX IF NOT EXISTS cases_rule_opened ON cases (rule_id, opened_at);
CREATE INDEX IF NOT EXISTS cases_state_opened ON cases (state, opened_at);
CREATE INDEX IF NOT EXISTS cases_zone ON cases (json_extract(violation, '$.zone_id'), opened_at);
CREATE INDEX IF NOT EXISTS cases_manifest ON cases (manifest_sha256);
CREATE TABLE IF NOT EXISTS case_events (
    seq     INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL,
    event   TEXT NOT NULL,
    at      REAL NOT NULL,
    data    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id);
"""

MIGRATIONS = (
    ("chain_seq", "INTEGER"),
    ("acked_at", "REAL"),
    ("ack_ref", "TEXT"),
)
"""Columns added to `cases` since its first release: added to an older database on open.
`chain_seq` is the package's sequence number in the box's hash chain, `acked_at` when the case
system acknowledged the case, `ack_ref` its own id for it (or what it echoed), when it gave one."""

ACK_COLUMNS = frozenset({"chain_seq", "acked_at", "ack_ref"})


class IllegalTransition(ValueError):
    """A transition the life cycle does not allow; the message says why."""


class UnknownCase(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class Case:
    case_id: str
    violation_id: str
    state: State
    rule_id: str
    category: str
    site_id: str
    opened_at: datetime
    deadline: datetime | None
    escalated_at: datetime | None
    package: str | None
    manifest_sha256: str | None
    updated_at: datetime
    chain_seq: int | None = None
    acked_at: datetime | None = None
    ack_ref: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state not in FINAL

    def to_dict(self) -> dict[str, Any]:
        def iso(ts: datetime | None) -> str | None:
            return None if ts is None else ts.isoformat()

        return {
            "case_id": self.case_id,
            "violation_id": self.violation_id,
            "state": self.state.value,
            "rule_id": self.rule_id,
            "category": self.category,
            "site_id": self.site_id,
            "opened_at": iso(self.opened_at),
            "deadline": iso(self.deadline),
            "escalated_at": iso(self.escalated_at),
            "package": self.package,
            "manifest_sha256": self.manifest_sha256,
            "updated_at": iso(self.updated_at),
            "chain_seq": self.chain_seq,
            "acked_at": iso(self.acked_at),
            "ack_ref": self.ack_ref,
        }


@dataclass(frozen=True, slots=True)
class CaseEvent:
    seq: int
    case_id: str
    event: str
    at: datetime
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "case_id": self.case_id,
            "event": self.event,
            "at": self.at.isoformat(),
            "data": self.data,
        }


_COLUMNS = (
    "case_id, violation_id, state, rule_id, category, site_id, opened_at, deadline,"
    " escalated_at, package, manifest_sha256, updated_at, chain_seq, acked_at, ack_ref"
)
_INSERTED = (
    "case_id, violation_id, state, rule_id, category, site_id, opened_at, deadline,"
    " escalated_at, package, manifest_sha256, updated_at"
)


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _case(row: tuple) -> Case:
    return Case(
        row[0],
        row[1],
        State(row[2]),
        row[3],
        row[4],
        row[5],
        _ts(row[6]),  # type: ignore[arg-type]
        _ts(row[7]),
        _ts(row[8]),
        row[9],
        row[10],
        _ts(row[11]),  # type: ignore[arg-type]
        row[12],
        _ts(row[13]),
        row[14],
    )


class CaseStore:
    """One SQLite file (WAL); thread-safe. Other tables (the feed's outbox) may share it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns a database made by an older release lacks (ALTER TABLE ... ADD
        COLUMN only where missing; two processes opening at once are both fine)."""
        with self.lock:
            have = {row[1] for row in self.db.execute("PRAGMA table_info(cases)")}
            for name, kind in MIGRATIONS:
                if name in have:
                    continue
                try:
                    self.db.execute(f"ALTER TABLE cases ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):
                        raise

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def open(
        self, violation: Violation, at: datetime | None = None, *, case_id: str | None = None
    ) -> tuple[Case, bool]:
        """Open the case of a violation; a second call for the same violation returns the
        existing case (False: not new)."""
        case_id = case_id or case_id_of(violation.violation_id, violation.opened_at)
        now = (at or datetime.now(UTC)).timestamp()
        deadline = violation.deadline
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute(
                    f"SELECT {_COLUMNS} FROM cases WHERE violation_id = ?",
                    (violation.violation_id,),
                ).fetchone()
                if row is not None:
                    self.db.execute("COMMIT")
                    return _case(row), False
                self.db.execute(
                    f"INSERT INTO cases ({_INSERTED}, violation) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?)",
                    (
                        case_id,
                        violation.violation_id,
                        State.OPENED.value,
                        violation.rule_id,
                        violation.category,
                        violation.site_id,
                        violation.opened_at.timestamp(),
                        None if deadline is None else deadline.timestamp(),
                        now,
                        json.dumps(violation.to_dict(), ensure_ascii=False),
                    ),
                )
                self._event(
                    case_id,
                    State.OPENED.value,
                    now,
                    {"violation_id": violation.violation_id, "rule_id": violation.rule_id},
                )
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite already rolled back a full disk
                    self.db.execute("ROLLBACK")
                raise
        return self.get(case_id), True

    def transition(
        self,
        case_id: str,
        to: State | str,
        at: datetime | None = None,
        data: dict[str, Any] | None = None,
        **columns: Any,
    ) -> Case:
        """Move a case to `to`; refuses (IllegalTransition) what the life cycle does not allow.
        `columns` may set `package` and `manifest_sha256`, and (on acknowledgement) `chain_seq`,
        `acked_at` (epoch seconds) and `ack_ref`, in the same transaction."""
        target = State(to)
        now = (at or datetime.now(UTC)).timestamp()
        unknown = set(columns) - {"package", "manifest_sha256"} - ACK_COLUMNS
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)}")
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute(
                    "SELECT state FROM cases WHERE case_id = ?", (case_id,)
                ).fetchone()
                if row is None:
                    raise UnknownCase(case_id)
                current = State(row[0])
                if target not in NEXT[current]:
                    allowed = ", ".join(s.value for s in NEXT[current]) or "nothing (final)"
                    raise IllegalTransition(
                        f"case {case_id}: cannot go from {current.value} to {target.value}; "
                        f"from {current.value} it may go to {allowed}"
                    )
                sets = ", ".join(f"{name} = ?" for name in columns)
                self.db.execute(
                    f"UPDATE cases SET state = ?, updated_at = ?{', ' + sets if sets else ''}"
                    " WHERE case_id = ?",
                    (target.value, now, *columns.values(), case_id),
                )
                self._event(case_id, target.value, now, {"from": current.value, **(data or {})})
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite already rolled back a full disk
                    self.db.execute("ROLLBACK")
                raise
        return self.get(case_id)

    def escalate_overdue(self, now: datetime | None = None) -> list[Case]:
        """Cases past their disposal deadline and not closed: one `escalated` event each."""
        at = (now or datetime.now(UTC)).timestamp()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                rows = self.db.execute(
                    "SELECT case_id, deadline, state FROM cases WHERE deadline IS NOT NULL"
                    " AND deadline < ? AND escalated_at IS NULL AND state NOT IN (?, ?, ?)",
                    (at, *[s.value for s in NOT_ESCALATED]),
                ).fetchall()
                for case_id, deadline, state in rows:
                    self.db.execute(
                        "UPDATE cases SET escalated_at = ? WHERE case_id = ?", (at, case_id)
                    )
                    self._event(
                        case_id,
                        ESCALATED,
                        at,
                        {
                            "deadline": _ts(deadline).isoformat(),  # type: ignore[union-attr]
                            "state": state,
                            "overdue_s": round(at - deadline, 3),
                        },
                    )
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite already rolled back a full disk
                    self.db.execute("ROLLBACK")
                raise
        return [self.get(case_id) for case_id, _, _ in rows]

    def get(self, case_id: str) -> Case:
        with self.lock:
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM cases WHERE case_id = ?", (case_id,)
            ).fetchone()
        if row is None:
            raise UnknownCase(case_id)
        return _case(row)

    def acknowledged_head(self) -> dict[str, Any] | None:
        """The highest chain link the case system has acknowledged: seq, manifest SHA-256, case
        id, when and its reference. What `evidence verify --expect-head` needs to check the
        tail of the chain (the case system keeps the same record on its side)."""
        with self.lock:
            row = self.db.execute(
                "SELECT chain_seq, manifest_sha256, case_id, acked_at, ack_ref FROM cases"
                " WHERE acked_at IS NOT NULL AND chain_seq IS NOT NULL"
                " ORDER BY chain_seq DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        seq, sha, case_id, acked_at, ref = row
        return {
            "seq": seq,
            "manifest_sha256": sha,
            "case_id": case_id,
            "acked_at": _ts(acked_at).isoformat(),  # type: ignore[union-attr]
            "ack_ref": ref,
        }

    def find(self, case_id: str) -> Case | None:
        try:
            return self.get(case_id)
        except UnknownCase:
            return None

    def violation(self, case_id: str) -> Violation:
        with self.lock:
            row = self.db.execute(
                "SELECT violation FROM cases WHERE case_id = ?", (case_id,)
            ).fetchone()
        if row is None:
            raise UnknownCase(case_id)
        return Violation.from_dict(json.loads(row[0]))

    def last_opened(self) -> list[tuple[str, str, datetime]]:
        """(rule id, situation, when it last opened a case) per rule and situation: what the
        rules engine needs to keep its cooldowns across a restart."""
        with self.lock:
            rows = self.db.execute(
                "SELECT rule_id, json_extract(violation, '$.situation'), max(opened_at)"
                " FROM cases GROUP BY 1, 2"
            ).fetchall()
        return [
            (rule, situation, datetime.fromtimestamp(at, UTC))
            for rule, situation, at in rows
            if situation is not None
        ]

    def list(self, states: Iterable[State | str] | None = None) -> list[Case]:
        query = f"SELECT {_COLUMNS} FROM cases"
        params: tuple[str, ...] = ()
        if states is not None:
            params = tuple(State(s).value for s in states)
            query += f" WHERE state IN ({','.join('?' * len(params))})"
        with self.lock:
            rows = self.db.execute(query + " ORDER BY opened_at, case_id", params).fetchall()
        return [_case(r) for r in rows]

    def open_case_ids(self) -> set[str]:
        return {c.case_id for c in self.list() if c.is_open}

    def events(self, case_id: str | None = None, after_seq: int = 0) -> list[CaseEvent]:
        query = "SELECT seq, case_id, event, at, data FROM case_events WHERE seq > ?"
        params: tuple[Any, ...] = (after_seq,)
        if case_id is not None:
            query += " AND case_id = ?"
            params += (case_id,)
        with self.lock:
            rows = self.db.execute(query + " ORDER BY seq", params).fetchall()
        return [
            CaseEvent(seq, cid, event, _ts(at), json.loads(data))  # type: ignore[arg-type]
            for seq, cid, event, at, data in rows
        ]

    def audit(
        self,
        actor: str,
        action: str,
        target: str,
        before: Any = None,
        after: Any = None,
        *,
        case_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """An operator's change (who, when, what, before/after) as an `audit` row of
        `case_events`, so the sink ships it with the case events. `case_id`: the case it is
        about; otherwise the row is keyed by its target (e.g. `zones/cam-market-01`)."""
        data = {"actor": actor, "action": action, "target": target}
        data |= {"before": before, "after": after}
        when = (at or datetime.now(UTC)).timestamp()
        with self.lock:
            self._event(case_id or target, AUDIT, when, data)

    def _event(self, case_id: str, event: str, at: float, data: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO case_events (case_id, event, at, data) VALUES (?, ?, ?, ?)",
            (case_id, event, at, json.dumps(data, ensure_ascii=False, default=str)),
        )
