"""The case's types: its life-cycle states and the steps between them, the event names the
box records beside them, and the Case and CaseEvent records the store hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


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
    State.EVIDENCE_COMPLETE: (State.SUBMITTED, State.REJECTED),
    State.SUBMITTED: (State.ACKNOWLEDGED,),
    State.ACKNOWLEDGED: (State.CONFIRMED, State.REJECTED, State.RECTIFIED, State.CLOSED),
    State.CONFIRMED: (State.NOTIFIED, State.RECTIFIED, State.CLOSED),
    State.NOTIFIED: (State.RECTIFIED, State.CLOSED),
    State.RECTIFIED: (State.CLOSED,),
    State.REJECTED: (State.CLOSED,),
    State.CLOSED: (State.ACKNOWLEDGED,),
}
FINAL = (State.CLOSED,)
NOT_ESCALATED = (State.REJECTED, State.RECTIFIED, State.CLOSED)
"""States in which a passed disposal deadline no longer matters."""
ESCALATED = "escalated"
CLEARED = "cleared"
REPEAT = "repeat"
REOPENED = "reopened"
AUDIT = "audit"
"""Event name of an operator's change made in the console (`CaseStore.audit`)."""


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
    cleared_at: datetime | None = None
    repeat_of: str | None = None
    review: str | None = None
    escalation_level: int = 0

    @property
    def is_open(self) -> bool:
        return self.state not in FINAL

    @property
    def disposal_s(self) -> float | None:
        """Seconds from opening to the box seeing the situation end (None: not cleared)."""
        if self.cleared_at is None:
            return None
        return (self.cleared_at - self.opened_at).total_seconds()

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
            "cleared_at": iso(self.cleared_at),
            "repeat_of": self.repeat_of,
            "review": self.review,
            "escalation_level": self.escalation_level,
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


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)
