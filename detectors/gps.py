"""One vehicle's GPS track → geofence enter/inside/exit, speeding, off-route, device health.

Fixes first pass the filters (gps_filters.py); only good fixes move the vehicle. Every decision
runs on the fix's event time. Zone membership and the route corridor change only after
`INERTIA_FIXES` consecutive fixes agree, so one noisy fix on a boundary does not make an exit
and a re-entry. A situation keeps its key (kind, device, subject, zone, start) from its first
observation to its last: `enter`, `inside`... `exit` share one; `off` and `back` share one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detectors.geofence import Corridor, Geofence, LocalProjection, projection_for
from detectors.gps_filters import (
    Candidate,
    FixFilter,
    candidate_from_dict,
    candidate_to_dict,
    implied_speed_kmh,
)
from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import Device, GpsFilters

INERTIA_FIXES = 2
UPDATE_EVERY_S = 1.0
HEALTH_REPEAT_S = 60.0


@dataclass(slots=True)
class _Situation:
    """An open situation: its start, how far it has been reported, and a pending change."""

    first_seen: datetime
    last_seen: datetime
    last_emitted: datetime | None = None
    streak: int = 0
    streak_since: datetime | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "last_emitted": _iso(self.last_emitted),
            "streak": self.streak,
            "streak_since": _iso(self.streak_since),
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Situation:
        return cls(
            first_seen=datetime.fromisoformat(data["first_seen"]),
            last_seen=datetime.fromisoformat(data["last_seen"]),
            last_emitted=_when(data.get("last_emitted")),
            streak=int(data.get("streak", 0)),
            streak_since=_when(data.get("streak_since")),
            attributes=dict(data.get("attributes") or {}),
        )


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _situation(data: Mapping[str, Any] | None) -> _Situation | None:
    return None if data is None else _Situation.from_dict(data)


def _due(situation: _Situation, ts: datetime) -> bool:
    last = situation.last_emitted
    return last is None or (ts - last).total_seconds() >= UPDATE_EVERY_S


class GpsDetector:
    """State of one GPS device (or drone): filters, zones, speed and route."""

    def __init__(self, device: Device, stats: Counter[str], subject: str = "vehicle") -> None:
        self.device = device
        self.subject = subject
        self.stats = stats
        self.filters = FixFilter(device.filters or GpsFilters())
        self.stale_after_s = (device.filters or GpsFilters()).stale_after_s
        self._projection = projection_for(device.zones, device.route)
        self._fences: list[Geofence] = []
        self._corridor: Corridor | None = None
        if self._projection is not None:
            self._build(self._projection)
        self._inside: dict[str, _Situation] = {}
        self._entering: dict[str, _Situation] = {}
        self._off: _Situation | None = None
        self._leaving: _Situation | None = None
        self._over: _Situation | None = None
        self._speeding_reported = False
        self._last: Candidate | None = None
        self._location: GeoPoint | None = None
        self._last_received: datetime | None = None
        self._stale: _Situation | None = None

    def _build(self, projection: LocalProjection) -> None:
        self._fences = [Geofence(zone, projection) for zone in self.device.zones]
        if self.device.route is not None:
            self._corridor = Corridor(self.device.route, projection)

    @property
    def off_route(self) -> bool:
        """Outside the route corridor now (an `off` situation is open)."""
        return self._off is not None

    # ---- state across restarts ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every open situation with its start, so that a restarted box carries on with the
        same observation keys instead of opening a second case for the same episode."""

        def one(situation: _Situation | None) -> dict[str, Any] | None:
            return None if situation is None else situation.to_dict()

        return {
            "subject": self.subject,
            "filters": self.filters.snapshot(),
            "inside": {zone: s.to_dict() for zone, s in self._inside.items()},
            "entering": {zone: s.to_dict() for zone, s in self._entering.items()},
            "off": one(self._off),
            "leaving": one(self._leaving),
            "over": one(self._over),
            "speeding_reported": self._speeding_reported,
            "last": None if self._last is None else candidate_to_dict(self._last),
            "location": None
            if self._location is None
            else [self._location.lon, self._location.lat],
            "last_received": _iso(self._last_received),
            "stale": one(self._stale),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        zones = {zone.id for zone in self.device.zones}
        self.filters.restore(data.get("filters") or {})
        self._inside = {
            z: _Situation.from_dict(s) for z, s in (data.get("inside") or {}).items() if z in zones
        }
        self._entering = {
            z: _Situation.from_dict(s)
            for z, s in (data.get("entering") or {}).items()
            if z in zones
        }
        route = self.device.route is not None
        self._off = _situation(data.get("off")) if route else None
        self._leaving = _situation(data.get("leaving")) if route else None
        self._over = _situation(data.get("over"))
        self._speeding_reported = bool(data.get("speeding_reported", False))
        last = data.get("last")
        self._last = None if last is None else candidate_from_dict(last)
        location = data.get("location")
        self._location = None if location is None else GeoPoint(*map(float, location))
        self._last_received = _when(data.get("last_received"))
        self._stale = _situation(data.get("stale"))

    @property
    def last_fix(self) -> Candidate | None:
        """The last fix the filters accepted."""
        return self._last

    # ---- input ----------------------------------------------------------------------------

    def process(self, fix: Candidate, speed_kmh: float | None = None) -> list[Observation]:
        """One fix (already in WGS-84); the observations it causes."""
        out: list[Observation] = []
        reason = self.filters.check(fix)
        if reason is not None:
            self.stats[f"gps_rejected.{reason.value}"] += 1
            return out
        self.stats["gps_accepted"] += 1
        self._last_received = _latest(self._last_received, fix.received_ts or fix.ts)
        if self._stale is not None:
            out.append(self._health("ok", self._stale, fix.ts))
            self._stale = None
        previous = self._last
        self._last = fix
        self._location = GeoPoint(fix.lon, fix.lat)
        if speed_kmh is None and previous is not None:
            speed_kmh = implied_speed_kmh(previous, fix)
        if self.device.speed_limit_kmh is not None and speed_kmh is not None:
            out += self._speed(self.device.speed_limit_kmh, speed_kmh, fix.ts)
        if self._projection is not None:
            xy = self._projection.xy(fix.lon, fix.lat)
            for fence in self._fences:
                out += self._zone(fence, fence.contains(xy), fix.ts, speed_kmh)
            if self._corridor is not None:
                out += self._route(self._corridor, xy, fix.ts)
        return out

    def tick(self, now: datetime) -> list[Observation]:
        """Time passing: dwell updates inside zones; a device without a good fix for
        `stale_after_s` (silent, or sending only rejected fixes) becomes `stale`."""
        out: list[Observation] = []
        last = self._last_seen_any()
        if last is None:
            return out
        silent_s = (now - last).total_seconds()
        if silent_s > self.stale_after_s:
            if self._stale is None:
                self._stale = _Situation(first_seen=last, last_seen=now)
                self.stats["device_stale"] += 1
            else:
                self._stale.last_seen = now
            emitted = self._stale.last_emitted
            if emitted is None or (now - emitted).total_seconds() >= HEALTH_REPEAT_S:
                out.append(self._health("stale", self._stale, now))
            return out
        for zone_id, situation in self._inside.items():
            if now > situation.last_seen and _due(situation, now):
                situation.last_seen = now
                out.append(self._fence_obs(zone_id, "inside", situation))
        return out

    def _last_seen_any(self) -> datetime | None:
        fix_ts = None if self._last is None else self._last.ts
        return _latest(fix_ts, self._last_received)

    # ---- geofences ------------------------------------------------------------------------

    def _zone(
        self, fence: Geofence, inside: bool, ts: datetime, speed_kmh: float | None
    ) -> list[Observation]:
        zone_id = fence.zone.id
        situation = self._inside.get(zone_id)
        attrs = {} if speed_kmh is None else {"speed_kmh": round(speed_kmh, 1)}
        if situation is None:
            if not inside:
                self._entering.pop(zone_id, None)
                return []
            pending = self._entering.setdefault(zone_id, _Situation(ts, ts))
            pending.streak += 1
            if pending.streak < INERTIA_FIXES:
                return []
            del self._entering[zone_id]
            situation = _Situation(first_seen=pending.first_seen, last_seen=ts, attributes=attrs)
            self._inside[zone_id] = situation
            return [self._fence_obs(zone_id, "enter", situation)]
        situation.attributes = attrs
        if inside:
            situation.streak, situation.streak_since = 0, None
            situation.last_seen = max(situation.last_seen, ts)
            if _due(situation, ts):
                return [self._fence_obs(zone_id, "inside", situation)]
            return []
        situation.streak += 1
        situation.streak_since = situation.streak_since or ts
        if situation.streak < INERTIA_FIXES:
            return []
        del self._inside[zone_id]
        situation.last_seen = max(situation.last_seen, situation.streak_since)
        return [self._fence_obs(zone_id, "exit", situation)]

    def _fence_obs(self, zone_id: str, state: str, situation: _Situation) -> Observation:
        situation.last_emitted = situation.last_seen
        zone = next(f.zone for f in self._fences if f.zone.id == zone_id)
        return Observation(
            kind=ObservationKind.GEOFENCE,
            device_id=self.device.id,
            subject=self.subject,
            subject_id=self.device.id,
            first_seen=situation.first_seen,
            last_seen=situation.last_seen,
            zone_id=zone_id,
            zone_kind=zone.kind.value,
            state=state,
            location=self._location,
            attributes=dict(situation.attributes),
        )

    # ---- route corridor -------------------------------------------------------------------

    def _route(
        self, corridor: Corridor, xy: tuple[float, float], ts: datetime
    ) -> list[Observation]:
        distance = corridor.distance_m(xy)
        on_route = distance <= corridor.buffer_m
        off = self._off
        if off is None:
            if on_route:
                self._leaving = None
                return []
            if self._leaving is None:
                self._leaving = _Situation(ts, ts)
            leaving = self._leaving
            leaving.last_seen = ts
            leaving.attributes["max_distance_m"] = max(
                distance, leaving.attributes.get("max_distance_m", 0.0)
            )
            if (ts - leaving.first_seen).total_seconds() < corridor.route.min_off_s:
                return []
            self._off, self._leaving = leaving, None
            return [self._route_obs("off", leaving, distance)]
        if on_route:
            off.streak += 1
            off.streak_since = off.streak_since or ts
            if off.streak < INERTIA_FIXES:
                return []
            self._off = None
            off.last_seen = max(off.last_seen, off.streak_since)
            return [self._route_obs("back", off, distance)]
        off.streak, off.streak_since = 0, None
        off.last_seen = ts
        off.attributes["max_distance_m"] = max(distance, off.attributes["max_distance_m"])
        if _due(off, ts):
            return [self._route_obs("off", off, distance)]
        return []

    def _route_obs(self, state: str, situation: _Situation, distance: float) -> Observation:
        situation.last_emitted = situation.last_seen
        assert self.device.route is not None
        return Observation(
            kind=ObservationKind.OFF_ROUTE,
            device_id=self.device.id,
            subject=self.subject,
            subject_id=self.device.id,
            first_seen=situation.first_seen,
            last_seen=situation.last_seen,
            state=state,
            location=self._location,
            attributes={
                "distance_m": round(distance, 1),
                "max_distance_m": round(situation.attributes["max_distance_m"], 1),
                "buffer_m": self.device.route.buffer_m,
            },
        )

    # ---- speed ----------------------------------------------------------------------------

    def _speed(self, limit: float, speed: float, ts: datetime) -> list[Observation]:
        over = self._over
        if speed <= limit:
            if over is None:
                return []
            self._over = None
            if not self._speeding_reported:
                return []
            over.last_seen = max(over.last_seen, ts)
            return [self._speed_obs("ok", over, speed, limit)]
        if over is None:
            over = self._over = _Situation(ts, ts, attributes={"max_speed_kmh": speed})
            self._speeding_reported = False
        over.last_seen = ts
        over.attributes["max_speed_kmh"] = max(speed, over.attributes["max_speed_kmh"])
        if (ts - over.first_seen).total_seconds() < self.device.speeding_min_s:
            return []
        if not self._speeding_reported or _due(over, ts):
            self._speeding_reported = True
            return [self._speed_obs("over", over, speed, limit)]
        return []

    def _speed_obs(
        self, state: str, situation: _Situation, speed: float, limit: float
    ) -> Observation:
        situation.last_emitted = situation.last_seen
        return Observation(
            kind=ObservationKind.SPEEDING,
            device_id=self.device.id,
            subject=self.subject,
            subject_id=self.device.id,
            first_seen=situation.first_seen,
            last_seen=situation.last_seen,
            state=state,
            location=self._location,
            attributes={
                "speed_kmh": round(speed, 1),
                "max_speed_kmh": round(situation.attributes["max_speed_kmh"], 1),
                "limit_kmh": limit,
            },
        )

    # ---- health ---------------------------------------------------------------------------

    def _health(self, state: str, situation: _Situation, ts: datetime) -> Observation:
        situation.last_seen = max(situation.last_seen, ts)
        situation.last_emitted = situation.last_seen
        return Observation(
            kind=ObservationKind.DEVICE_HEALTH,
            device_id=self.device.id,
            subject="device",
            subject_id=self.device.id,
            first_seen=situation.first_seen,
            last_seen=situation.last_seen,
            state=state,
            location=self._location,
            attributes={"stale_after_s": self.stale_after_s},
        )


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


__all__ = ["HEALTH_REPEAT_S", "INERTIA_FIXES", "UPDATE_EVERY_S", "GpsDetector"]
