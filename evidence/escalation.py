"""Escalations delivered: each `escalated` event of the case store goes to the case system
through the case feed, at least once, idempotently, like the cases themselves.

The feed's outbox database holds an `escalation_outbox` table with one row per case, level and
target (`http`, `mqtt`), filled from `case_events` by sequence number (the highest one queued is
the cursor, so a restart neither loses nor repeats one). A row is due only after the case's own
delivery to that target succeeded: a case system never hears of an escalation of a case it has
not received. Receivers deduplicate by `{case_id}/escalation/{level}`:

- HTTP: `POST {feed url}/{case_id}/escalations` with a JSON body and that key as
  `Idempotency-Key` (2xx or 409: delivered; 400/413/415/422: refused for good; else retried);
- MQTT: `{feed topic}/{case_id}/escalation`, QoS 1, the key in the payload's `idempotency_key`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from evidence.cases import ESCALATED, CaseStore
from evidence.feedauth import MissingToken, with_bearer

if TYPE_CHECKING:
    from evidence.feed import CaseFeed

log = logging.getLogger(__name__)

ESCALATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS escalation_outbox (
    case_id      TEXT NOT NULL,
    level        INTEGER NOT NULL,
    target       TEXT NOT NULL,
    event_seq    INTEGER NOT NULL,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    last_error   TEXT,
    created_at   REAL NOT NULL,
    delivered_at REAL,
    PRIMARY KEY (case_id, level, target)
);
CREATE INDEX IF NOT EXISTS escalation_outbox_due ON escalation_outbox (state, next_at);
"""

REFUSED_STATUSES = frozenset({400, 413, 415, 422})


class _Retry(Exception):
    pass


class _Refused(Exception):
    pass


def escalation_key(case_id: str, level: int) -> str:
    """What receivers deduplicate an escalation by."""
    return f"{case_id}/escalation/{level}"


def escalation_levels(store: CaseStore) -> Callable[[str], Sequence[float]]:
    """`levels(rule_id)` for `CaseStore.escalate_overdue`: the rule's `escalate` as its newest
    case's violation carries it (the rule as it is now, without the evidence stage needing the
    rules), `(1.0,)` for a rule with none. Remembered per rule for one call."""
    seen: dict[str, tuple[float, ...]] = {}

    def levels(rule_id: str) -> Sequence[float]:
        found = seen.get(rule_id)
        if found is None:
            with store.lock:
                row = store.db.execute(
                    "SELECT json_extract(violation, '$.escalate') FROM cases WHERE rule_id = ?"
                    " ORDER BY opened_at DESC LIMIT 1",
                    (rule_id,),
                ).fetchone()
            parsed = json.loads(row[0]) if row and row[0] else None
            found = tuple(float(x) for x in parsed) if parsed else (1.0,)
            seen[rule_id] = found
        return found

    return levels


class EscalationDelivery:
    """CaseFeed part: the escalation outbox and its two transports."""

    _db: sqlite3.Connection
    stats: Counter[str]

    def _init_escalations(self: CaseFeed) -> None:
        with self._lock:
            self._db.executescript(ESCALATION_SCHEMA)

    def enqueue_escalations(self: CaseFeed) -> int:
        """Outbox rows for every `escalated` event not queued yet (one per level and target)."""
        if not self.targets:
            return 0
        with self._lock:
            after = self._db.execute(
                "SELECT coalesce(max(event_seq), 0) FROM escalation_outbox"
            ).fetchone()[0]
        with self.store.lock:
            events = self.store.db.execute(
                "SELECT e.seq, e.case_id, e.at, e.data, c.site_id, c.rule_id FROM case_events e"
                " LEFT JOIN cases c ON c.case_id = e.case_id"
                " WHERE e.event = ? AND e.seq > ? ORDER BY e.seq",
                (ESCALATED, after),
            ).fetchall()
        now = self._clock()
        queued = 0
        for seq, case_id, at, data, site_id, rule_id in events:
            detail = json.loads(data)
            level = int(detail.get("level", 1))
            payload = {
                "type": "escalation",
                "case_id": case_id,
                "site_id": site_id,
                "rule_id": rule_id,
                "level": level,
                "of": detail.get("of", 1),
                "deadline": detail.get("deadline"),
                "state": detail.get("state"),
                "overdue_s": detail.get("overdue_s"),
                "escalated_at": datetime.fromtimestamp(at, UTC).isoformat(),
            }
            text = json.dumps(payload, ensure_ascii=False)
            with self._lock:
                self._db.executemany(
                    "INSERT OR IGNORE INTO escalation_outbox (case_id, level, target, event_seq,"
                    " payload, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(case_id, level, t, seq, text, now, now) for t in self.targets],
                )
            queued += 1
        self.stats["escalations_queued"] += queued
        return queued

    def drain_escalations(self: CaseFeed) -> Counter[str]:
        """Try every due escalation once whose case that target already took."""
        result: Counter[str] = Counter()
        result["escalations_enqueued"] = self.enqueue_escalations()
        now = self._clock()
        latest = now + self.settings.retry.max_delay_s
        with self._lock:
            due = self._db.execute(
                "SELECT e.case_id, e.level, e.target, e.attempts, e.payload"
                " FROM escalation_outbox e JOIN outbox o"
                " ON o.case_id = e.case_id AND o.target = e.target AND o.state = 'delivered'"
                " WHERE e.state = 'pending' AND (e.next_at <= ? OR e.next_at > ?)"
                " ORDER BY e.next_at, e.case_id, e.level",
                (now, latest),
            ).fetchall()
        for case_id, level, target, attempts, payload in due:
            if self._stop.is_set() and self._thread is not None:
                break
            outcome = self._attempt_escalation(
                case_id, level, target, attempts, json.loads(payload)
            )
            result["escalation_" + outcome] += 1
        return +result

    def escalation_outbox(self: CaseFeed) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT case_id, level, target, state, attempts, last_error, delivered_at"
                " FROM escalation_outbox ORDER BY event_seq, target"
            ).fetchall()
        keys = ("case_id", "level", "target", "state", "attempts", "last_error", "delivered_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def _attempt_escalation(
        self: CaseFeed, case_id: str, level: int, target: str, attempts: int, body: dict[str, Any]
    ) -> str:
        self.stats[f"escalation_{target}_attempts"] += 1
        try:
            if target == "http":
                detail = self._escalate_http(case_id, level, body)
            else:
                detail = self._escalate_mqtt(case_id, level, body)
        except _Refused as exc:
            self.stats["escalations_refused"] += 1
            log.error("case feed: %s refused escalation %s/%d: %s", target, case_id, level, exc)
            self._escalation_update(case_id, level, target, "refused", attempts + 1, 0.0, exc)
            return "refused"
        except (_Retry, OSError) as exc:
            self.stats["escalation_retries"] += 1
            delay = self._backoff(attempts + 1)
            log.warning(
                "case feed: %s delivery of escalation %s/%d failed (%s); next in %.1f s",
                target,
                case_id,
                level,
                exc,
                delay,
            )
            self._escalation_update(
                case_id, level, target, "pending", attempts + 1, self._clock() + delay, exc
            )
            return "retry"
        self.stats["escalations_delivered"] += 1
        log.info("case feed: escalation %s/%d delivered: %s", case_id, level, detail)
        with self._lock:
            self._db.execute(
                "UPDATE escalation_outbox SET state = 'delivered', attempts = ?, delivered_at = ?,"
                " last_error = NULL WHERE case_id = ? AND level = ? AND target = ?",
                (attempts + 1, self._clock(), case_id, level, target),
            )
        return "delivered"

    def _escalation_update(
        self: CaseFeed,
        case_id: str,
        level: int,
        target: str,
        state: str,
        attempts: int,
        next_at: float,
        error: Exception,
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE escalation_outbox SET state = ?, attempts = ?, next_at = ?,"
                " last_error = ? WHERE case_id = ? AND level = ? AND target = ?",
                (state, attempts, next_at, str(error)[:500], case_id, level, target),
            )

    def _escalate_http(
        self: CaseFeed, case_id: str, level: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        http = self.settings.http
        assert http is not None
        url = f"{http.url.rstrip('/')}/{case_id}/escalations"
        headers = {
            "Idempotency-Key": escalation_key(case_id, level),
            "User-Agent": "streetwatch-case-feed/1",
            "Content-Type": "application/json",
        }
        try:
            with_bearer(http, headers)
        except MissingToken as exc:
            raise _Retry(str(exc)) from None
        data = json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=http.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            text = exc.read(2048).decode("utf-8", "replace") if exc.fp else ""
            if status == 409:
                return {"target": "http", "status": status, "duplicate": True}
            if status in REFUSED_STATUSES:
                raise _Refused(f"HTTP {status}: {text[:200]}") from None
            raise _Retry(f"HTTP {status}: {text[:200]}") from None
        except TimeoutError as exc:
            raise _Retry(f"timed out after {http.timeout_s} s") from exc
        except urllib.error.URLError as exc:
            raise _Retry(f"cannot reach {url}: {exc.reason}") from None
        return {"target": "http", "status": status}

    def _escalate_mqtt(
        self: CaseFeed, case_id: str, level: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        client = self._mqtt
        if client is None or not self._mqtt_connected.is_set():
            raise _Retry("not connected to the broker")
        assert self.settings.mqtt is not None
        base = self.settings.mqtt.topic.replace("{site}", self.config.site.id)
        topic = f"{base.rstrip('/')}/{case_id}/escalation"
        message = body | {"idempotency_key": escalation_key(case_id, level)}
        info = client.publish(topic, json.dumps(message, ensure_ascii=False), qos=1)
        try:
            info.wait_for_publish(timeout=10.0)
        except (RuntimeError, ValueError) as exc:
            raise _Retry(f"publish failed: {exc}") from None
        if not info.is_published():
            raise _Retry("no PUBACK within 10 s")
        return {"target": "mqtt", "topic": topic, "mid": info.mid}
