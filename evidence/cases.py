"""The case store (SQLite): the enforcement life cycle of each case, every step time-stamped.

```
opened → evidence_complete → submitted → acknowledged → confirmed → notified → rectified → closed
                  ↘ rejected (box review)             ↘ rejected ──────────────────────────↗
                                       closed ─(reopened)→ acknowledged
```
`submitted`: queued in the feed's outbox; `acknowledged`: the case system took it;
`confirmed`/`rejected`: the reviewer's decision (the case system's, or an operator's on the box
before submission for a rule with `review: required`); `notified`: the party was told (告知送达);
`rectified`: the case system saw it put right; `closed`; `reopened` takes a closed case back to
`acknowledged`. A decision may skip steps forward (a case rectified without a notice, closed
after a confirmation), never back. Beside the life cycle, the box itself records when the
situation ended (`clear`: the subject left, the bay is vacant), which repeat a case is
(`mark_repeat`), and how far it escalated. Every transition and every escalation (a disposal
deadline passed with the case neither cleared, rectified, rejected nor closed) is a row in
`case_events`, which the TimescaleDB sink ships by `seq`.
"""

from __future__ import annotations

__all__ = [
    "AUDIT",
    "CLEARED",
    "ESCALATED",
    "FINAL",
    "NEXT",
    "NOT_ESCALATED",
    "REOPENED",
    "REPEAT",
    "Case",
    "CaseEvent",
    "CaseStore",
    "IllegalTransition",
    "State",
    "UnknownCase",
]

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evidence.casetypes import (
    AUDIT,
    CLEARED,
    ESCALATED,
    FINAL,
    NEXT,
    NOT_ESCALATED,
    REOPENED,
    REPEAT,
    Case,
    CaseEvent,
    IllegalTransition,
    State,
    UnknownCase,
    _ts,
)
from evidence.package import case_id_of
from rules.violation import Violation

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
    ("cleared_at", "REAL"),
    ("repeat_of", "TEXT"),
    ("review", "TEXT"),
    ("escalation_level", "INTEGER NOT NULL DEFAULT 0"),
)
"""Columns added to `cases` since its first release: added to an older database on open.
`chain_seq` is the package's sequence number in the box's hash chain, `acked_at` when the case
system acknowledged the case, `ack_ref` its own id for it (or what it echoed), when it gave one;
`cleared_at` when the box saw the situation end, `repeat_of` the earlier case this one repeats,
`review` an operator's review on the box (`pending`, `confirmed`, `rejected`), and
`escalation_level` how many of its rule's escalation levels have passed."""

ACK_COLUMNS = frozenset({"chain_seq", "acked_at", "ack_ref"})


_COLUMNS = (
    "case_id, violation_id, state, rule_id, category, site_id, opened_at, deadline,"
    " escalated_at, package, manifest_sha256, updated_at, chain_seq, acked_at, ack_ref,"
    " cleared_at, repeat_of, review, escalation_level"
)
_INSERTED = (
    "case_id, violation_id, state, rule_id, category, site_id, opened_at, deadline,"
    " escalated_at, package, manifest_sha256, updated_at"
)


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
        _ts(row[15]),
        row[16],
        row[17],
        row[18] or 0,
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
                if name == "escalation_level":  # escalated before levels: the first level
                    self.db.execute(
                        "UPDATE cases SET escalation_level = 1"
                        " WHERE escalated_at IS NOT NULL AND escalation_level = 0"
                    )

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
        *,
        event: str | None = None,
        **columns: Any,
    ) -> Case:
        """Move a case to `to`; refuses (IllegalTransition) what the life cycle does not allow.
        `event`: the event's name when it is not the target state's (`reopened`).
        `columns` may set `package` and `manifest_sha256`, and (on acknowledgement) `chain_seq`,
        `acked_at` (epoch seconds) and `ack_ref`, in the same transaction."""
        target = State(to)
        now = (at or datetime.now(UTC)).timestamp()
        unknown = set(columns) - {"package", "manifest_sha256", "review"} - ACK_COLUMNS
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
                self._event(
                    case_id, event or target.value, now, {"from": current.value, **(data or {})}
                )
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite already rolled back a full disk
                    self.db.execute("ROLLBACK")
                raise
        return self.get(case_id)

    def escalate_overdue(
        self,
        now: datetime | None = None,
        levels: Callable[[str], Sequence[float]] | None = None,
    ) -> list[Case]:
        """Cases past a disposal deadline and still open: neither cleared by the box nor
        rejected, rectified or closed. `levels(rule_id)`: multiples of the case's disposal time
        at which it escalates (default `(1.0,)`: once, at the deadline; `(1, 2)`: again at twice
        it). One `escalated` event per level passed, with the level; returns the cases that
        escalated now."""
        at = (now or datetime.now(UTC)).timestamp()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                rows = self.db.execute(
                    "SELECT case_id, rule_id, opened_at, deadline, state, escalation_level"
                    " FROM cases WHERE deadline IS NOT NULL AND deadline < ?"
                    " AND cleared_at IS NULL AND state NOT IN (?, ?, ?)",
                    (at, *[s.value for s in NOT_ESCALATED]),
                ).fetchall()
                escalated = []
                for case_id, rule_id, opened, deadline, state, level in rows:
                    steps = tuple(levels(rule_id)) if levels is not None else (1.0,)
                    level = level or 0
                    due = [
                        n
                        for n, factor in enumerate(steps, start=1)
                        if n > level and at >= opened + (deadline - opened) * factor
                    ]
                    if not due:
                        continue
                    reached = max(due)
                    self.db.execute(
                        "UPDATE cases SET escalated_at = coalesce(escalated_at, ?),"
                        " escalation_level = ? WHERE case_id = ?",
                        (at, reached, case_id),
                    )
                    self._event(
                        case_id,
                        ESCALATED,
                        at,
                        {
                            "level": reached,
                            "of": len(steps),
                            "deadline": _ts(deadline).isoformat(),  # type: ignore[union-attr]
                            "state": state,
                            "overdue_s": round(at - deadline, 3),
                        },
                    )
                    escalated.append(case_id)
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite already rolled back a full disk
                    self.db.execute("ROLLBACK")
                raise
        return [self.get(case_id) for case_id in escalated]

    def clear(self, case_id: str, at: datetime, data: dict[str, Any] | None = None) -> Case | None:
        """The box saw the case's situation end at `at` (the subject left, the bay is vacant,
        the goods were taken in): a `cleared` event with the time to disposal. Once per case;
        None when it was already cleared, is unknown, or was rejected or closed."""
        when = at.timestamp()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute(
                    "SELECT opened_at, state, cleared_at FROM cases WHERE case_id = ?",
                    (case_id,),
                ).fetchone()
                if row is None or row[2] is not None or row[1] in (State.REJECTED, State.CLOSED):
                    self.db.execute("COMMIT")
                    return None
                self.db.execute(
                    "UPDATE cases SET cleared_at = ?, updated_at = ? WHERE case_id = ?",
                    (when, datetime.now(UTC).timestamp(), case_id),
                )
                disposal = round(when - row[0], 3)
                self._event(case_id, CLEARED, when, {"disposal_s": disposal, **(data or {})})
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        return self.get(case_id)

    def mark_repeat(self, case_id: str, earlier: str, data: dict[str, Any] | None = None) -> bool:
        """Link a case to the earlier one whose situation came back (once; False if linked)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                changed = self.db.execute(
                    "UPDATE cases SET repeat_of = ? WHERE case_id = ? AND repeat_of IS NULL",
                    (earlier, case_id),
                ).rowcount
                if changed:
                    now = datetime.now(UTC).timestamp()
                    self._event(case_id, REPEAT, now, {"repeat_of": earlier, **(data or {})})
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        return bool(changed)

    def recently_cleared(
        self, rule_id: str, since: datetime, zone_id: str | None = None
    ) -> list[Case]:
        """Cases of `rule_id` (in `zone_id`, when given) the box cleared at or after `since`,
        newest first: what a situation that comes back is a repeat of."""
        query = f"SELECT {_COLUMNS} FROM cases WHERE rule_id = ? AND cleared_at >= ?"
        params: tuple[Any, ...] = (rule_id, since.timestamp())
        if zone_id is not None:
            query += " AND json_extract(violation, '$.zone_id') = ?"
            params += (zone_id,)
        with self.lock:
            rows = self.db.execute(query + " ORDER BY cleared_at DESC", params).fetchall()
        return [_case(r) for r in rows]

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

    # ---- decisions ----

    def in_transaction(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `work(db)` in one write transaction (BEGIN IMMEDIATE, under the lock) and return
        what it returns: for a caller that changes a case and its own table together (the
        idempotency record of a decision, evidence/decisions.py). An exception rolls back."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self.db)
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        return result

    def change_within(
        self,
        case_id: str,
        to: State | None,
        at: float,
        data: dict[str, Any],
        *,
        event: str,
        **columns: Any,
    ) -> State:
        """`transition`'s check and writes inside the caller's `in_transaction`; `to` None
        keeps the state (an operator's confirmation on the box sets only `review`). Returns the
        state the case came from."""
        unknown = set(columns) - {"review"}
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)}")
        row = self.db.execute("SELECT state FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise UnknownCase(case_id)
        current = State(row[0])
        target = current if to is None else State(to)
        if to is not None and target not in NEXT[current]:
            allowed = ", ".join(s.value for s in NEXT[current]) or "nothing (final)"
            raise IllegalTransition(
                f"case {case_id}: cannot go from {current.value} to {target.value}; "
                f"from {current.value} it may go to {allowed}"
            )
        sets = "".join(f", {name} = ?" for name in columns)
        self.db.execute(
            f"UPDATE cases SET state = ?, updated_at = ?{sets} WHERE case_id = ?",
            (target.value, at, *columns.values(), case_id),
        )
        self._event(case_id, event, at, {"from": current.value, **data})
        return current
