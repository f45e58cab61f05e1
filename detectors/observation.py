"""Observation: the one currency every detector emits and the rules engine consumes.

A camera track dwelling in a zone, a fire-lane bay going occupied, a truck leaving its route
corridor: each is an Observation of one subject by one device over a time span. Detectors emit
a fresh Observation for the same situation as it evolves (same `key`, later `last_seen`, longer
dwell); consumers keep the latest per key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class ObservationKind(StrEnum):
    PRESENCE = "presence"
    """A tracked subject (camera) inside a zone; dwell grows while it stays."""
    OCCUPANCY = "occupancy"
    """A parking bay's state from a geomagnetic sensor: state `occupied` or `vacant`."""
    GEOFENCE = "geofence"
    """A vehicle and a geofence/zone: state `enter`, `inside` (dwell) or `exit`."""
    SPEEDING = "speeding"
    OFF_ROUTE = "off_route"
    """A vehicle outside its approved route corridor; state `off` or `back`."""
    DEVICE_HEALTH = "device_health"
    """A device stopped reporting sensibly (stale, flat line): state names the problem."""
    METRIC = "metric"
    """A sensor's metric: each sample (no state, attributes metric/value/unit), and the rules'
    threshold episodes of it (state `over` or `ok`, see rules.thresholds)."""
    COVERAGE = "coverage"
    """A sweeper's road segment today: `partial`, `covered`, `uncovered` (its deadline passed
    short of the passes it needs) or `missed` (the day ended so); attributes hold the passes."""
    VEHICLE_SIGNAL = "vehicle_signal"
    """A vehicle terminal's alarm flag or named input (JT/T 808: overspeed, dump_raised): state
    the signal's name while it is on, `clear` when it goes off (detectors/vehicle_signals.py)."""


@dataclass(frozen=True, slots=True)
class GeoPoint:
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Where a camera saw the subject best: the frame and the box in pixels (x1, y1, x2, y2)."""

    device_id: str
    frame_index: int
    frame_ts: datetime
    box: tuple[float, float, float, float]
    confidence: float


@dataclass(frozen=True, slots=True)
class Observation:
    kind: ObservationKind
    device_id: str
    subject: str
    """What was seen: person, bicycle, motorcycle, car, truck, goods, stall, vehicle, bay."""
    subject_id: str
    """Stable id of the subject for this device: track id, vehicle device id, bay id."""
    first_seen: datetime
    last_seen: datetime
    zone_id: str | None = None
    zone_kind: str | None = None
    state: str | None = None
    count: int = 1
    location: GeoPoint | None = None
    frame: FrameRef | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    """Measurements behind the observation: speed_kmh, deviation_ut, distance_m, ..."""

    @property
    def dwell_s(self) -> float:
        return (self.last_seen - self.first_seen).total_seconds()

    @property
    def key(self) -> str:
        """Identifies the situation across updates: same device, subject, zone and start."""
        return (
            f"{self.kind.value}/{self.device_id}/{self.subject_id}/{self.zone_id or '-'}/"
            f"{self.first_seen.timestamp():.3f}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (times as ISO 8601 UTC), for recordings, the journal and sinks."""
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "device_id": self.device_id,
            "subject": self.subject,
            "subject_id": self.subject_id,
            "first_seen": self.first_seen.astimezone(UTC).isoformat(),
            "last_seen": self.last_seen.astimezone(UTC).isoformat(),
            "zone_id": self.zone_id,
            "zone_kind": self.zone_kind,
            "state": self.state,
            "count": self.count,
            "location": None
            if self.location is None
            else {"lon": self.location.lon, "lat": self.location.lat},
            "frame": None
            if self.frame is None
            else {
                "device_id": self.frame.device_id,
                "frame_index": self.frame.frame_index,
                "frame_ts": self.frame.frame_ts.astimezone(UTC).isoformat(),
                "box": list(self.frame.box),
                "confidence": self.frame.confidence,
            },
            "attributes": dict(self.attributes),
        }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observation:
        location = data.get("location")
        frame = data.get("frame")
        return cls(
            kind=ObservationKind(data["kind"]),
            device_id=data["device_id"],
            subject=data["subject"],
            subject_id=str(data["subject_id"]),
            first_seen=datetime.fromisoformat(data["first_seen"]),
            last_seen=datetime.fromisoformat(data["last_seen"]),
            zone_id=data.get("zone_id"),
            zone_kind=data.get("zone_kind"),
            state=data.get("state"),
            count=int(data.get("count", 1)),
            location=None if location is None else GeoPoint(location["lon"], location["lat"]),
            frame=None
            if frame is None
            else FrameRef(
                device_id=frame["device_id"],
                frame_index=int(frame["frame_index"]),
                frame_ts=datetime.fromisoformat(frame["frame_ts"]),
                box=tuple(frame["box"]),  # type: ignore[arg-type]
                confidence=float(frame["confidence"]),
            ),
            attributes=dict(data.get("attributes") or {}),
        )
