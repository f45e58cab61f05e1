"""Violation: what the rules engine emits and the evidence stage turns into a case."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from detectors.observation import GeoPoint, Observation


@dataclass(frozen=True, slots=True)
class EvidenceSpec:
    """What the evidence stage collects for a violation of this rule."""

    pre_s: float = 10.0
    post_s: float = 5.0
    snapshots: bool = True
    clip: bool = True
    sensor_series_s: float = 600.0
    """How much sensor history (geomagnetic field, GPS track) before the violation to include."""


@dataclass(frozen=True, slots=True)
class Violation:
    rule_id: str
    rule_name: str
    category: str
    """The enforcement item, e.g. 市容管理/非机动车乱停放."""
    severity: str
    site_id: str
    situation: str
    """One situation, one case: what the rule's cooldown keys on (rule, subject, zone...)."""
    opened_at: datetime
    """Event time at which the condition was first met in full."""
    window_start: datetime
    window_end: datetime
    devices: tuple[str, ...]
    subject: str
    subject_id: str
    zone_id: str | None = None
    zone_kind: str | None = None
    party: str | None = None
    """Merchant id for shop-front zones; None when the party is unknown (e.g. a parked car)."""
    location: GeoPoint | None = None
    dispose_within: timedelta | None = None
    escalate: tuple[float, ...] = (1.0,)
    """Escalation levels, as multiples of `dispose_within` (the rule's `escalate`)."""
    review_required: bool = False
    """The rule's `review: required`: an operator confirms or rejects before the feed sends."""
    repeat_within: timedelta | None = None
    """The rule's `repeat_within`: how long after a clearance a comeback is a repeat."""
    evidence: EvidenceSpec = EvidenceSpec()
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    """The rule's condition as it stood when the violation opened (dwell, count, schedule...)."""
    observations: tuple[Observation, ...] = ()

    @property
    def violation_id(self) -> str:
        """Deterministic: the same situation opening at the same time is the same violation."""
        seed = f"{self.site_id}|{self.rule_id}|{self.situation}|{self.opened_at.timestamp():.3f}"
        return hashlib.sha256(seed.encode()).hexdigest()[:20]

    @property
    def deadline(self) -> datetime | None:
        return None if self.dispose_within is None else self.opened_at + self.dispose_within

    def to_dict(self) -> dict[str, Any]:
        return {
            "violation_id": self.violation_id,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "category": self.category,
            "severity": self.severity,
            "site_id": self.site_id,
            "situation": self.situation,
            "opened_at": self.opened_at.astimezone(UTC).isoformat(),
            "window_start": self.window_start.astimezone(UTC).isoformat(),
            "window_end": self.window_end.astimezone(UTC).isoformat(),
            "devices": list(self.devices),
            "subject": self.subject,
            "subject_id": self.subject_id,
            "zone_id": self.zone_id,
            "zone_kind": self.zone_kind,
            "party": self.party,
            "location": None
            if self.location is None
            else {"lon": self.location.lon, "lat": self.location.lat},
            "dispose_within_s": None
            if self.dispose_within is None
            else self.dispose_within.total_seconds(),
            "escalate": list(self.escalate),
            "review_required": self.review_required,
            "repeat_within_s": None
            if self.repeat_within is None
            else self.repeat_within.total_seconds(),
            "evidence": {
                "pre_s": self.evidence.pre_s,
                "post_s": self.evidence.post_s,
                "snapshots": self.evidence.snapshots,
                "clip": self.evidence.clip,
                "sensor_series_s": self.evidence.sensor_series_s,
            },
            "thresholds": dict(self.thresholds),
            "observations": [o.to_dict() for o in self.observations],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Violation:
        location = data.get("location")
        within = data.get("dispose_within_s")
        return cls(
            rule_id=data["rule_id"],
            rule_name=data["rule_name"],
            category=data["category"],
            severity=data["severity"],
            site_id=data["site_id"],
            situation=data["situation"],
            opened_at=datetime.fromisoformat(data["opened_at"]),
            window_start=datetime.fromisoformat(data["window_start"]),
            window_end=datetime.fromisoformat(data["window_end"]),
            devices=tuple(data["devices"]),
            subject=data["subject"],
            subject_id=data["subject_id"],
            zone_id=data.get("zone_id"),
            zone_kind=data.get("zone_kind"),
            party=data.get("party"),
            location=None if location is None else GeoPoint(location["lon"], location["lat"]),
            dispose_within=None if within is None else timedelta(seconds=within),
            escalate=tuple(data.get("escalate") or (1.0,)),
            review_required=bool(data.get("review_required", False)),
            repeat_within=None
            if data.get("repeat_within_s") is None
            else timedelta(seconds=data["repeat_within_s"]),
            evidence=EvidenceSpec(**data.get("evidence", {})),
            thresholds=dict(data.get("thresholds") or {}),
            observations=tuple(Observation.from_dict(o) for o in data.get("observations", [])),
        )
