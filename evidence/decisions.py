"""Decisions about a case: the case system's (over HTTP or MQTT) and an operator's (console).

`apply_decision` maps a `Decision` onto the case life cycle (`evidence.cases`), refuses what it
does not allow, and is idempotent on a key: the first result is kept in `case_decisions` (in the
case store's database, written in the same transaction as the case's transition), so a repeated
key with the same request returns that result and changes nothing; the same key with another
request is refused. A refusal is not recorded: the same key may succeed later (a decision that
arrived before the one it follows).

Two kinds of decision:
- the case system's, on a case it has acknowledged (`acknowledged` and later); before the box
  has recorded that acknowledgement a decision is refused (the case system retries);
- the box review of a rule with `review: required`: its cases wait in `evidence_complete` with
  `review = pending` until an operator confirms (review `confirmed`: the feed then submits it)
  or rejects (state `rejected`, review `rejected`: a false positive that never leaves the box).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from evidence.cases import NEXT, CaseStore, IllegalTransition, State, UnknownCase

Event = Literal["confirmed", "rejected", "notified", "rectified", "closed", "reopened"]
Source = Literal["http", "mqtt", "console"]

TARGET: dict[str, State] = {
    "confirmed": State.CONFIRMED,
    "rejected": State.REJECTED,
    "notified": State.NOTIFIED,
    "rectified": State.RECTIFIED,
    "closed": State.CLOSED,
    "reopened": State.ACKNOWLEDGED,
}
BEFORE_ACK = (State.OPENED, State.EVIDENCE_COMPLETE, State.SUBMITTED)
"""States in which the case system has not (as far as the box knows) acknowledged the case."""
PENDING, CONFIRMED, REJECTED = "pending", "confirmed", "rejected"
"""Values of a case's `review` column."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS case_decisions (
    key            TEXT PRIMARY KEY,
    case_id        TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    result         TEXT NOT NULL,
    at             REAL NOT NULL
)
"""

# Refusal reasons (stable: counters are keyed by them)
UNKNOWN_CASE = "unknown_case"
IMPOSSIBLE = "impossible"
NOT_ACKNOWLEDGED = "not_acknowledged"
KEY_REUSED = "key_reused"
INVALID = "invalid"


class Decision(BaseModel):
    """One decision, as the case system sends it (JSON over HTTP or MQTT)."""

    model_config = ConfigDict(extra="forbid")

    event: Event
    at: AwareDatetime | None = None
    """When it was decided (ISO 8601 with offset); default: when the box records it."""
    by: str | None = Field(None, min_length=1, max_length=200)
    """The reviewer (an operator's decision in the console: the operator, always)."""
    reason: str | None = Field(None, max_length=2000)
    how: str | None = Field(None, max_length=500)
    """For `notified`: how the party was told (sms, letter, in person): the 告知送达 proof."""
    ref: str | None = Field(None, max_length=200)
    """The case system's own id for the case or the decision."""
    note: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _notified_says_how(self) -> Decision:
        if self.event == "notified" and not self.how:
            raise ValueError("a notified decision says how the party was told (how)")
        return self

    def request_sha256(self, case_id: str) -> str:
        """What a replay must repeat: the case and the decision as given (no defaults)."""
        body = {"case_id": case_id, **self.model_dump(mode="json", exclude_none=True)}
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class Refused(Exception):
    """A decision the box will not apply: `reason` (a counter key), a one-line `detail`, the
    case's current `state` when it has one."""

    def __init__(self, reason: str, detail: str, state: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.state = state


@dataclass(frozen=True, slots=True)
class Applied:
    result: dict[str, Any]
    """case_id, event, from, state, review, at, key, source, by, rule_id."""
    replay: bool
    """True: the key was applied before; `result` is that first result, nothing changed."""


def apply_decision(
    store: CaseStore,
    case_id: str,
    decision: Decision,
    key: str,
    source: Source,
    *,
    now: datetime | None = None,
) -> Applied:
    """Apply `decision` to the case once per `key`; raises Refused."""
    request = decision.request_sha256(case_id)
    recorded = now or datetime.now(UTC)
    at = decision.at or recorded

    def work(db: sqlite3.Connection) -> Applied:
        db.execute(SCHEMA)
        row = db.execute(
            "SELECT request_sha256, result FROM case_decisions WHERE key = ?", (key,)
        ).fetchone()
        if row is not None:
            if row[0] != request:
                raise Refused(
                    KEY_REUSED,
                    f"Idempotency-Key {key!r} was used for a different request; "
                    "send a new key for a new decision",
                )
            return Applied(json.loads(row[1]), True)
        case = store.get(case_id)
        target, columns = _plan(case_id, case.state, case.review, decision)
        data = {
            "by": decision.by,
            "reason": decision.reason,
            "how": decision.how,
            "ref": decision.ref,
            "note": decision.note,
            "source": source,
            "key": key,
            "recorded_at": recorded.isoformat(),
        }
        data = {name: value for name, value in data.items() if value is not None}
        if target is None:
            data["review"] = columns["review"]
        try:
            before = store.change_within(
                case_id, target, at.timestamp(), data, event=decision.event, **columns
            )
        except IllegalTransition as exc:
            raise Refused(IMPOSSIBLE, str(exc), case.state.value) from None
        result = {
            "case_id": case_id,
            "event": decision.event,
            "from": before.value,
            "state": (target or before).value,
            "review": columns.get("review", case.review),
            "rule_id": case.rule_id,
            "at": at.isoformat(),
            "key": key,
            "source": source,
            "by": decision.by,
        }
        db.execute(
            "INSERT INTO case_decisions (key, case_id, request_sha256, result, at)"
            " VALUES (?, ?, ?, ?, ?)",
            (key, case_id, request, json.dumps(result, ensure_ascii=False), recorded.timestamp()),
        )
        return Applied(result, False)

    try:
        return store.in_transaction(work)
    except UnknownCase:
        raise Refused(UNKNOWN_CASE, f"no case {case_id}") from None


def _plan(
    case_id: str, state: State, review: str | None, decision: Decision
) -> tuple[State | None, dict[str, str]]:
    """The target state (None: the state stays) and the columns a decision sets."""
    if state is State.EVIDENCE_COMPLETE and review == PENDING:
        if decision.event == "confirmed":
            return None, {"review": CONFIRMED}
        if decision.event == "rejected":
            return State.REJECTED, {"review": REJECTED}
        raise Refused(
            IMPOSSIBLE,
            f"case {case_id} waits for the box review (confirmed or rejected), "
            f"not {decision.event}",
            state.value,
        )
    if state in BEFORE_ACK:
        raise Refused(
            NOT_ACKNOWLEDGED,
            f"case {case_id} is {state.value}: the box has not recorded the case system's "
            "acknowledgement yet; decisions come after it",
            state.value,
        )
    if decision.event == "reopened" and state is not State.CLOSED:
        raise Refused(
            IMPOSSIBLE, f"case {case_id} is {state.value}: only a closed case reopens", state.value
        )
    if decision.event != "reopened" and state is State.CLOSED:
        raise Refused(
            IMPOSSIBLE,
            f"case {case_id} is closed: it may only be reopened, not {decision.event}",
            state.value,
        )
    return TARGET[decision.event], {}


def allowed_events(state: State, review: str | None) -> list[str]:
    """The decisions a case in `state` (with `review`) accepts now: the console's buttons."""
    if state is State.EVIDENCE_COMPLETE and review == PENDING:
        return ["confirmed", "rejected"]
    if state in BEFORE_ACK:
        return []
    if state is State.CLOSED:
        return ["reopened"]
    return [event for event, target in TARGET.items() if target in NEXT[state]]
