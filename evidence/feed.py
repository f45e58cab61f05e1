"""The case feed: every case with complete evidence goes to the case system, at least once.

A persistent SQLite outbox holds one row per case and target (`http`, `mqtt`). A case is
`submitted` once its rows are in the outbox, `acknowledged` once every target took it. Failed
attempts are retried with exponential backoff (with jitter, capped) for as long as it takes;
rows survive restarts. Receivers deduplicate by case id: HTTP carries it as `Idempotency-Key`,
MQTT in the payload. A receiver that refuses the payload itself (400, 413, 415, 422) is not
retried: the row is marked `refused` with the reason and counted.

Every delivery carries the package's place in the box's hash chain (`chain`: its sequence
number, its manifest's SHA-256 and the previous one, the signing key, and the box's ledger head
when it was sent), so the case system can hold the highest link it acknowledged and notice a box
whose chain later ends before it or differs there (a chain cannot prove its own tail). The
case system's acknowledgement is recorded with the case: when, and its reference for it.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from evidence.cases import Case, CaseStore, IllegalTransition, State
from evidence.escalation import EscalationDelivery
from evidence.feedauth import MissingToken, with_bearer
from evidence.package import MANIFEST, SIGNATURE
from evidence.payloads import (
    acknowledgement,
    chain_of,
    json_or_none,
    multipart,
    reference_body,
)
from ingest import failpoints
from ingest.config import SiteConfig
from ingest.mqtt_session import apply_broker_settings

log = logging.getLogger(__name__)

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    case_id      TEXT NOT NULL,
    target       TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    last_error   TEXT,
    created_at   REAL NOT NULL,
    delivered_at REAL,
    response     TEXT,
    PRIMARY KEY (case_id, target)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
"""

"""Fields of the case system's answer taken as its reference for the case (the first found)."""

REFUSED_STATUSES = frozenset({400, 413, 415, 422})
"""The receiver says this very payload is wrong: sending the same bytes again cannot help."""


class Retry(Exception):
    """A delivery attempt that failed in a way worth retrying."""


class Refused(Exception):
    """The receiver refused the payload for good."""


@dataclass(frozen=True, slots=True)
class Delivered:
    detail: dict[str, Any]


class CaseFeed(EscalationDelivery):
    def __init__(
        self,
        config: SiteConfig,
        store: CaseStore,
        *,
        outbox: Path | None = None,
        clock: Any = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.settings = config.evidence.feed
        root = Path(config.storage.root)
        self.outbox_path = Path(outbox or self.settings.outbox or root / "case_outbox.sqlite")
        if not self.outbox_path.is_absolute():
            self.outbox_path = root / self.outbox_path
        self.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.outbox_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(OUTBOX_SCHEMA)
        self._lock = threading.RLock()
        self._init_escalations()
        self._clock = clock
        self.targets = [
            name
            for name, on in (("http", self.settings.http), ("mqtt", self.settings.mqtt))
            if on is not None
        ]
        self.stats: Counter[str] = Counter()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._mqtt: mqtt.Client | None = None
        self._mqtt_connected = threading.Event()

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self.settings.mqtt is not None:
            self._start_mqtt()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="case-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()
            self._mqtt = None

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._db.close()

    def wake(self) -> None:
        """A case just became complete: look now instead of at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain_once()
            except Exception:
                self.stats["loop_errors"] += 1
                log.exception("case feed: drain failed; retrying")
            wait = self._next_due_in()
            self._wake.wait(min(max(wait, 0.05), 1.0))
            self._wake.clear()

    # -- the outbox -------------------------------------------------------------------------

    def enqueue_ready(self) -> int:
        """Outbox rows for every case with complete evidence; those cases become submitted."""
        if not self.targets:
            return 0
        queued = 0
        now = self._clock()
        for case in self.store.list([State.EVIDENCE_COMPLETE]):
            if case.review == "pending":  # review: required, and no operator has confirmed yet
                continue
            with self._lock:
                self._db.executemany(
                    "INSERT OR IGNORE INTO outbox (case_id, target, next_at, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    [(case.case_id, t, now, now) for t in self.targets],
                )
            try:
                self.store.transition(case.case_id, State.SUBMITTED, data={"targets": self.targets})
            except IllegalTransition:
                continue
            queued += 1
            self.stats["cases_submitted"] += 1
        return queued

    def drain_once(self) -> dict[str, int]:
        """Enqueue what is ready, try every due row once; returns what happened."""
        result: Counter[str] = Counter()
        result["enqueued"] = self.enqueue_ready()
        now = self._clock()
        # next_at is wall-clock time (it survives restarts); no retry is ever scheduled more
        # than max_delay_s ahead, so a row further out was scheduled before the clock stepped
        # back: it is due now, not an hour later
        latest = now + self.settings.retry.max_delay_s
        with self._lock:
            due = self._db.execute(
                "SELECT case_id, target, attempts FROM outbox WHERE state = 'pending'"
                " AND (next_at <= ? OR next_at > ?) ORDER BY next_at, case_id",
                (now, latest),
            ).fetchall()
        for case_id, target, attempts in due:
            if self._stop.is_set() and self._thread is not None:
                break
            outcome = self._attempt(case_id, target, attempts)
            result[outcome] += 1
        self._acknowledge_complete()
        result.update(self.drain_escalations())  # escalations: evidence/escalation.py
        return dict(result)

    def _attempt(self, case_id: str, target: str, attempts: int) -> str:
        self.stats[f"{target}_attempts"] += 1
        try:
            case = self.store.get(case_id)
            failpoints.reach("feed.before_send")
            delivered = self._deliver(target, case)
            failpoints.reach("feed.sent")
        except Refused as exc:
            self.stats[f"{target}_refused"] += 1
            log.error("case feed: %s refused case %s for good: %s", target, case_id, exc)
            self._update(case_id, target, "refused", attempts + 1, self._clock(), str(exc))
            return "refused"
        except (Retry, OSError) as exc:
            delay = self._backoff(attempts + 1)
            self.stats[f"{target}_retries"] += 1
            log.warning(
                "case feed: %s delivery of %s failed (%s); attempt %d, next in %.1f s",
                target,
                case_id,
                exc,
                attempts + 1,
                delay,
            )
            self._update(case_id, target, "pending", attempts + 1, self._clock() + delay, str(exc))
            return "retry"
        self.stats[f"{target}_delivered"] += 1
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = 'delivered', attempts = ?, delivered_at = ?,"
                " response = ?, last_error = NULL WHERE case_id = ? AND target = ?",
                (attempts + 1, self._clock(), json.dumps(delivered.detail), case_id, target),
            )
        return "delivered"

    def _update(
        self, case_id: str, target: str, state: str, attempts: int, next_at: float, error: str
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = ?, attempts = ?, next_at = ?, last_error = ?"
                " WHERE case_id = ? AND target = ?",
                (state, attempts, next_at, error[:500], case_id, target),
            )

    def _backoff(self, attempts: int) -> float:
        retry = self.settings.retry
        delay = min(retry.max_delay_s, retry.min_delay_s * 2 ** min(attempts - 1, 30))
        return delay * (0.5 + random.random() / 2)

    def _acknowledge_complete(self) -> None:
        """Submitted cases whose every outbox row is delivered become acknowledged (checked
        over the submitted cases only, so the cost does not grow with the outbox's history)."""
        for case in self.store.list([State.SUBMITTED]):
            with self._lock:
                row = self._db.execute(
                    "SELECT group_concat(target), group_concat(response, '\x1e') FROM outbox"
                    " WHERE case_id = ?"
                    " HAVING count(*) > 0 AND sum(state = 'delivered') = count(*)",
                    (case.case_id,),
                ).fetchone()
            if row is None:
                continue
            case_id, (targets, responses) = case.case_id, row
            answers = [json.loads(r) for r in (responses or "").split("\x1e") if r]
            detail = {"targets": targets.split(","), "responses": answers}
            chain = next((a["chain"] for a in answers if isinstance(a.get("chain"), dict)), {})
            acked = [a["acked_at"] for a in answers if isinstance(a.get("acked_at"), str)]
            refs = [a["ack_ref"] for a in answers if a.get("ack_ref") is not None]
            self.store.transition(
                case_id,
                State.ACKNOWLEDGED,
                data=detail,
                chain_seq=chain.get("seq"),
                acked_at=(
                    max(datetime.fromisoformat(t) for t in acked).timestamp()
                    if acked
                    else self._clock()
                ),
                ack_ref=refs[0] if refs else None,
            )
            self.stats["cases_acknowledged"] += 1

    def _next_due_in(self) -> float:
        with self._lock:
            row = self._db.execute(
                "SELECT min(next_at) FROM outbox WHERE state = 'pending'"
            ).fetchone()
        return 1.0 if row[0] is None else row[0] - self._clock()

    def backlog(self) -> int:
        """Deliveries still pending (one per case and target); cheap, by the outbox index."""
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
        return int(row[0])

    def outbox(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT case_id, target, state, attempts, next_at, last_error, delivered_at"
                " FROM outbox ORDER BY created_at, case_id, target"
            ).fetchall()
        keys = ("case_id", "target", "state", "attempts", "next_at", "last_error", "delivered_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- delivery ---------------------------------------------------------------------------

    def _deliver(self, target: str, case: Case) -> Delivered:
        if case.package is None:
            raise Refused(f"case {case.case_id} has no package")
        package = Path(case.package)
        manifest_bytes = (package / MANIFEST).read_bytes()
        signature = (package / SIGNATURE).read_bytes()
        if target == "http":
            return self._deliver_http(case, package, manifest_bytes, signature)
        return self._deliver_mqtt(case, package, manifest_bytes, signature)

    def _deliver_http(
        self, case: Case, package: Path, manifest_bytes: bytes, signature: bytes
    ) -> Delivered:
        http = self.settings.http
        assert http is not None
        chain = chain_of(package, manifest_bytes)
        headers = {
            "Idempotency-Key": case.case_id,
            "User-Agent": "streetwatch-case-feed/1",
            "Streetwatch-Chain-Seq": str(chain["seq"]),
            "Streetwatch-Manifest-SHA256": chain["manifest_sha256"],
        }
        try:
            with_bearer(http, headers)
        except MissingToken as exc:
            raise Retry(str(exc)) from None
        if http.media == "upload":
            body, content_type = multipart(case, package, manifest_bytes, signature)
        else:
            body = json.dumps(
                reference_body(case, package, manifest_bytes, signature, http.media_base_url),
                ensure_ascii=False,
            ).encode()
            content_type = "application/json"
        headers["Content-Type"] = content_type
        request = urllib.request.Request(http.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=http.timeout_s) as response:
                status = response.status
                text = response.read(64 * 1024).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            status = exc.code
            text = exc.read(2048).decode("utf-8", "replace") if exc.fp else ""
            if status == 409:
                detail = {"target": "http", "status": status, "duplicate": True}
                return Delivered(detail | self._ack(case, chain, json_or_none(text)))
            if status in REFUSED_STATUSES:
                raise Refused(f"HTTP {status}: {text[:200]}") from None
            raise Retry(f"HTTP {status}: {text[:200]}") from None
        except TimeoutError as exc:
            raise Retry(f"timed out after {http.timeout_s} s") from exc
        except urllib.error.URLError as exc:
            raise Retry(f"cannot reach {http.url}: {exc.reason}") from None
        answer = json_or_none(text)
        detail = {"target": "http", "status": status, "body": answer}
        return Delivered(detail | self._ack(case, chain, answer))

    def _ack(self, case: Case, chain: dict[str, Any], answer: Any) -> dict[str, Any]:
        """The case system took the case (see `acknowledgement`); an echoed manifest hash that is
        not the one sent is logged and counted."""
        ack = acknowledgement(chain, answer, datetime.fromtimestamp(self._clock(), UTC))
        if ack.get("echo", {}).get("mismatch"):
            self.stats["ack_echo_mismatch"] += 1
            log.error(
                "case feed: the case system acknowledged case %s with manifest %s, but %s "
                "was sent (seq %s)",
                case.case_id,
                ack["echo"]["manifest_sha256"],
                chain["manifest_sha256"],
                chain["seq"],
            )
        return ack

    def _deliver_mqtt(
        self, case: Case, package: Path, manifest_bytes: bytes, signature: bytes
    ) -> Delivered:
        client = self._mqtt
        if client is None or not self._mqtt_connected.is_set():
            raise Retry("not connected to the broker")
        assert self.settings.mqtt is not None
        topic = self.settings.mqtt.topic.replace("{site}", self.config.site.id)
        http = self.settings.http
        media_base_url = http.media_base_url if http else None
        body = reference_body(case, package, manifest_bytes, signature, media_base_url)
        body["idempotency_key"] = case.case_id
        chain = body["chain"]
        info = client.publish(topic, json.dumps(body, ensure_ascii=False), qos=1)
        try:
            info.wait_for_publish(timeout=10.0)
        except (RuntimeError, ValueError) as exc:
            raise Retry(f"publish failed: {exc}") from None
        if not info.is_published():
            raise Retry("no PUBACK within 10 s")
        return Delivered(
            {
                "target": "mqtt",
                "topic": topic,
                "mid": info.mid,
                "acked_at": datetime.fromtimestamp(self._clock(), UTC).isoformat(),
                "chain": {"seq": chain["seq"], "manifest_sha256": chain["manifest_sha256"]},
            }
        )

    def _start_mqtt(self) -> None:
        broker = self.config.broker
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{broker.client_id}-cases-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv5,
        )
        apply_broker_settings(client, broker)

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if not reason.is_failure:
                self._mqtt_connected.set()

        def on_disconnect(_c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
            self._mqtt_connected.clear()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s)
        client.loop_start()
        self._mqtt = client
