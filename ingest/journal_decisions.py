"""The journal's side for the case system's decisions received over MQTT: journaled before the
ack like readings, applied later by the pipeline and settled (or deferred) one by one."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest.decisions import DecisionMessage

DECISIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    topic       TEXT NOT NULL,
    received_ts REAL NOT NULL,
    body        TEXT NOT NULL,
    settled_ts  REAL,
    outcome     TEXT,
    detail      TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    retry_ts    REAL,
    UNIQUE (key, case_id, body)
);
CREATE INDEX IF NOT EXISTS decisions_pending ON decisions (seq) WHERE settled_ts IS NULL;
"""
"""The case system's decisions received over MQTT (`ingest/decisions.py`), journaled before the
ack like readings, once per idempotency key and request (a redelivery is stored once; another
request under a used key is stored too, for the case store to refuse). The pipeline applies
them to the case store and settles each (`outcome`: applied, replayed or refused, with the
reason in `detail`). One that must wait (it came before the box recorded the case system's
acknowledgement of its case) stays unsettled: `attempts` counts the tries, `retry_ts` is when
the next may be made, `detail` says why it waits."""


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class DecisionsJournal:
    """Mixed into `Journal`, which provides the connection, its lock and transactions."""

    _db: sqlite3.Connection
    _lock: threading.Lock

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    @staticmethod
    def _insert_decisions(db: sqlite3.Connection, decisions: Iterable[DecisionMessage]) -> int:
        rows = [
            (
                d.key,
                d.case_id,
                d.topic,
                d.received_ts.timestamp(),
                orjson.dumps(d.body, option=orjson.OPT_SORT_KEYS).decode(),
            )
            for d in decisions
        ]
        if not rows:
            return 0
        before = db.total_changes
        db.executemany(
            "INSERT OR IGNORE INTO decisions (key, case_id, topic, received_ts, body)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        return db.total_changes - before

    def pending_decisions(
        self, limit: int = 100, now: datetime | None = None
    ) -> list[JournaledDecision]:
        """Decisions not yet settled and not waiting for a retry (`defer_decision`) past `now`
        (default: the wall clock), in the order they arrived; nor one behind an earlier decision
        about the same case that waits (a case's decisions apply in the order they came)."""
        at = (now or datetime.now(UTC)).timestamp()
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, case_id, topic, received_ts, body, attempts FROM decisions d"
                " WHERE settled_ts IS NULL AND (retry_ts IS NULL OR retry_ts <= ?)"
                " AND NOT EXISTS (SELECT 1 FROM decisions e WHERE e.settled_ts IS NULL"
                " AND e.case_id = d.case_id AND e.seq < d.seq AND e.retry_ts > ?)"
                " ORDER BY seq LIMIT ?",
                (at, at, limit),
            ).fetchall()
        return [
            JournaledDecision(seq, key, case_id, topic, _ts(ts), json.loads(body), attempts)
            for seq, key, case_id, topic, ts, body, attempts in rows
        ]

    def defer_decision(self, seq: int, retry_at: datetime, detail: str = "") -> None:
        """Leave a decision unsettled, to be tried again from `retry_at`; counts the attempt."""
        with self._transaction() as db:
            db.execute(
                "UPDATE decisions SET attempts = attempts + 1, retry_ts = ?, detail = ?"
                " WHERE seq = ? AND settled_ts IS NULL",
                (retry_at.timestamp(), detail[:500], seq),
            )

    def settle_decision(self, seq: int, outcome: str, detail: str = "") -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE decisions SET settled_ts = ?, outcome = ?, detail = ? WHERE seq = ?",
                (datetime.now(UTC).timestamp(), outcome, detail[:500], seq),
            )

    def decisions(self) -> list[dict[str, Any]]:
        """Every journaled decision with its outcome (tests, diagnostics)."""
        keys = ("seq", "key", "case_id", "received_ts", "outcome", "detail", "attempts")
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, case_id, received_ts, outcome, detail, attempts"
                " FROM decisions ORDER BY seq"
            ).fetchall()
        return [dict(zip(keys, row, strict=True)) for row in rows]


@dataclass(frozen=True, slots=True)
class JournaledDecision:
    seq: int
    key: str
    case_id: str
    topic: str
    received_ts: datetime
    body: dict[str, Any]
    attempts: int = 0
    """Earlier tries that had to wait (`Journal.defer_decision`)."""
