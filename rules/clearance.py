"""Clearance: the rules engine saw an opened violation's situation end.

The subject left the zone, the bay went vacant, the truck is back on its route, the goods were
taken in (the camera's left-object region matched the background again and it reported an
`exit`). The engine emits one per violation it opened (`Engine.clearances()`); what the box
does with it (a `cleared` event, an "after" evidence package) is the evidence stage's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from detectors.observation import GeoPoint, Observation

ENDED = "ended"
"""An observation in a closing state (exit, vacant, back, ...) ended the situation."""
SILENT = "silent"
"""A re-reported subject (camera presence) was not reported for the clause's `lost_after`."""
SUPERSEDED = "superseded"
"""A new situation of the same subject began, so the earlier one had ended by then."""


@dataclass(frozen=True, slots=True)
class OpenedSituation:
    """What the engine keeps of a violation it opened, until its situation ends."""

    rule_id: str
    violation_id: str
    situation: str
    opened_at: datetime
    devices: tuple[str, ...]
    zone_id: str | None
    location: GeoPoint | None


@dataclass(frozen=True, slots=True)
class Clearance:
    rule_id: str
    violation_id: str
    """The violation (and so the case) whose situation ended."""
    situation: str
    opened_at: datetime
    """The violation's `opened_at`: with `violation_id`, what names its case."""
    cleared_at: datetime
    """Event time at which the situation ended."""
    how: str
    """`ended`, `silent` or `superseded` (see the module's constants)."""
    observation: Observation | None
    """The report that showed it: the closing one, or the last one heard (`silent`)."""
    devices: tuple[str, ...] = ()
    zone_id: str | None = None
    location: GeoPoint | None = None

    @classmethod
    def of(
        cls, opened: OpenedSituation, cleared_at: float, how: str, observation: Observation | None
    ) -> Clearance:
        return cls(
            rule_id=opened.rule_id,
            violation_id=opened.violation_id,
            situation=opened.situation,
            opened_at=opened.opened_at,
            cleared_at=datetime.fromtimestamp(max(cleared_at, opened.opened_at.timestamp()), UTC),
            how=how,
            observation=observation,
            devices=opened.devices,
            zone_id=opened.zone_id,
            location=opened.location,
        )

    def shown_by(self) -> dict[str, Any] | None:
        """The observation that showed the end, in brief (kind, device, subject, zone, state)."""
        o = self.observation
        if o is None:
            return None
        return {
            "kind": o.kind.value,
            "device_id": o.device_id,
            "subject": o.subject,
            "subject_id": o.subject_id,
            "zone_id": o.zone_id,
            "state": o.state,
            "first_seen": o.first_seen.astimezone(UTC).isoformat(),
            "last_seen": o.last_seen.astimezone(UTC).isoformat(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "violation_id": self.violation_id,
            "situation": self.situation,
            "opened_at": self.opened_at.astimezone(UTC).isoformat(),
            "cleared_at": self.cleared_at.astimezone(UTC).isoformat(),
            "how": self.how,
            "observation": None if self.observation is None else self.observation.to_dict(),
            "devices": list(self.devices),
            "zone_id": self.zone_id,
            "location": None
            if self.location is None
            else {"lon": self.location.lon, "lat": self.location.lat},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Clearance:
        location = data.get("location")
        observation = data.get("observation")
        return cls(
            rule_id=data["rule_id"],
            violation_id=data["violation_id"],
            situation=data["situation"],
            opened_at=datetime.fromisoformat(data["opened_at"]),
            cleared_at=datetime.fromisoformat(data["cleared_at"]),
            how=data["how"],
            observation=None if observation is None else Observation.from_dict(observation),
            devices=tuple(data.get("devices") or ()),
            zone_id=data.get("zone_id"),
            location=None if location is None else GeoPoint(location["lon"], location["lat"]),
        )
