"""A sanitation vehicle's coverage of its road segments, from its filtered GPS fixes.

A *pass* is one traversal of a segment: the vehicle stays within the segment's buffer while
fixes at working speed vouch for at least `min_fraction` of its length (the stretch between two
consecutive fixes counts when both lie in the buffer, the speed is in the working range and
they are at most `max_gap_s` apart). Leaving the buffer (`LEAVE_FIXES` fixes in a row), or
turning back by more than `_turn_m`, ends a traversal; each traversal counts once, the moment
it reaches the fraction. With `direction: forward` only traversals in the line's own direction
count.

Passes count per local day (site timezone) and reset at local midnight. Observations (kind
`coverage`, subject `segment`, zone = segment id):
- `partial` / `covered` when a segment's pass count changes before its deadline (first_seen:
  the local day's start);
- `uncovered` when its deadline passes short of the passes it needs (first_seen: the deadline),
  again on each pass after it while still short; a later `covered` ends that situation;
- `missed` at local midnight for a segment still uncovered: the day is over.
A deadline is judged only if the detector watched since before it (a box switched on at noon
does not report the morning's segments), by `process` (the fix's time) and by `tick` (time
passing while the vehicle sends nothing).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from shapely.geometry import LineString, Point

from detectors.geofence import LocalProjection
from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config.sweeping import Sweeping, SweepSegment

KMH_PER_MS = 3.6
LEAVE_FIXES = 2
"""Fixes in a row outside a segment's buffer that end a traversal (GPS jitter makes one)."""
SUBJECT = "segment"


@dataclass(frozen=True, slots=True)
class _Road:
    """A segment compiled into the vehicle's local metres."""

    id: str
    config: SweepSegment
    lonlat: tuple[tuple[float, float], ...]
    line: LineString
    length_m: float
    buffer_m: float
    forward_only: bool
    middle: GeoPoint
    bounds: tuple[float, float, float, float]
    """The line's envelope grown by the buffer: most fixes are ruled out by it alone."""


@dataclass(slots=True)
class _Traversal:
    """One stay inside a segment's buffer: the stretches (along-line metres) vouched for."""

    start: float
    last: float
    last_ts: float
    extreme: float
    sign: int = 0
    """+1 along the line's direction, -1 against it, 0 not yet known."""
    spans: list[list[float]] = field(default_factory=list)
    counted: bool = False
    outside: int = 0
    """Fixes in a row outside the buffer: one stray fix does not end the traversal."""

    def credit(self, a: float, b: float) -> None:
        lo, hi = (a, b) if a <= b else (b, a)
        merged: list[list[float]] = []
        for span in sorted([*self.spans, [lo, hi]]):
            if merged and span[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], span[1])
            else:
                merged.append(list(span))
        self.spans = merged

    @property
    def covered_m(self) -> float:
        return sum(hi - lo for lo, hi in self.spans)


@dataclass(frozen=True, slots=True)
class SegmentFigure:
    """One segment's coverage today, as the evidence package carries it."""

    id: str
    name: str
    passes: int
    required: int
    deadline: str
    covered: bool


class CoverageDetector:
    """Coverage of one vehicle's segments; `process` each accepted fix, `tick` as time passes."""

    def __init__(
        self,
        device_id: str,
        sweeping: Sweeping,
        tz: tzinfo,
        stats: Counter[str],
        projection: LocalProjection | None = None,
    ) -> None:
        self.device_id = device_id
        self.sweeping = sweeping
        self.tz = tz
        self.stats = stats
        lines = {s.id: sweeping.line_wgs84(s) for s in sweeping.segments}
        self.projection = projection or LocalProjection.around(
            p for line in lines.values() for p in line
        )
        assert self.projection is not None
        self.roads: list[_Road] = []
        for segment in sweeping.segments:
            line = self.projection.line(lines[segment.id])
            middle = line.interpolate(0.5, normalized=True)
            self.roads.append(
                _Road(
                    segment.id,
                    segment,
                    tuple(lines[segment.id]),
                    line,
                    float(line.length),
                    sweeping.buffer_of(segment),
                    sweeping.direction_of(segment) == "forward",
                    GeoPoint(*self.projection.lonlat(middle.x, middle.y)),
                    _grown(line.bounds, sweeping.buffer_of(segment)),
                )
            )
        self.low_kmh, self.high_kmh = sweeping.speed_kmh
        self._day: date | None = None
        self._since: datetime | None = None
        self._passes: dict[str, int] = {}
        self._open: set[str] = set()
        """Segments whose `uncovered` situation is open today."""
        self._judged: set[str] = set()
        """Segments whose deadline has been dealt with today (reported, or not watched)."""
        self._trips: dict[str, _Traversal] = {}
        self._last: tuple[float, float, float] | None = None
        """(epoch s, x, y) of the previous fix."""
        self._quiet_until = -math.inf
        """Before this (epoch s) nothing is due: no deadline, no local midnight."""

    # ---- input ----------------------------------------------------------------------------

    def process(
        self, ts: datetime, lon: float, lat: float, speed_kmh: float | None = None
    ) -> list[Observation]:
        """One accepted WGS-84 fix (`speed_kmh`: as reported, else implied from the last)."""
        out = self._advance(ts)
        if self._day is not None and self._local_day(ts) < self._day:
            self.stats["coverage_fixes_before_today"] += 1
            return out
        self.stats["coverage_fixes"] += 1
        t = ts.timestamp()
        x, y = self.projection.xy(lon, lat)
        last = self._last
        if speed_kmh is None and last is not None and t > last[0]:
            speed_kmh = math.hypot(x - last[1], y - last[2]) / (t - last[0]) * KMH_PER_MS
        self._last = (t, x, y)
        working = speed_kmh is not None and self.low_kmh <= speed_kmh <= self.high_kmh
        near = [r for r in self.roads if r.id in self._trips or _within(r.bounds, x, y)]
        if near:
            point = Point(x, y)
            for road in near:
                out += self._follow(road, point, t, ts, working)
        return out

    def tick(self, now: datetime) -> list[Observation]:
        """Time passing without fixes: deadlines that fall due, the day that ends."""
        return self._advance(now)

    # ---- passes ---------------------------------------------------------------------------

    def _turn_m(self, road: _Road) -> float:
        return min(max(15.0, 2.0 * road.buffer_m), 0.25 * road.length_m)

    def _follow(
        self, road: _Road, point: Point, t: float, ts: datetime, working: bool
    ) -> list[Observation]:
        trip = self._trips.get(road.id)
        x, y = point.x, point.y
        if not _within(road.bounds, x, y) or road.line.distance(point) > road.buffer_m:
            if trip is not None:
                trip.outside += 1
                if trip.outside >= LEAVE_FIXES:
                    del self._trips[road.id]
            return []
        pos = float(road.line.project(point))
        if trip is None:
            self._trips[road.id] = _Traversal(pos, pos, t, pos)
            return []
        trip.outside = 0
        turn = self._turn_m(road)
        if trip.sign == 0 and abs(pos - trip.start) >= turn:
            trip.sign = 1 if pos > trip.start else -1
        if trip.sign:
            if (pos - trip.extreme) * trip.sign > 0:
                trip.extreme = pos
            elif (trip.extreme - pos) * trip.sign > turn:
                # turned back: a new traversal starts where it turned
                self.stats["coverage_turns"] += 1
                turned = _Traversal(trip.extreme, trip.last, trip.last_ts, pos, -trip.sign)
                self._trips[road.id] = trip = turned
        step_ok = working and t - trip.last_ts <= self.sweeping.max_gap_s
        if step_ok:
            trip.credit(trip.last, pos)
        trip.last, trip.last_ts = pos, t
        if trip.counted or trip.covered_m < self.sweeping.min_fraction * road.length_m:
            return []
        direction = trip.sign or (1 if pos >= trip.start else -1)
        if road.forward_only and direction < 0:
            self.stats["coverage_wrong_direction"] += 1
            trip.counted = True
            return []
        trip.counted = True
        self._passes[road.id] = self._passes.get(road.id, 0) + 1
        self.stats["coverage_passes"] += 1
        return [self._progress(road, ts)]

    # ---- days and deadlines ---------------------------------------------------------------

    def _local_day(self, ts: datetime) -> date:
        return ts.astimezone(self.tz).date()

    def _day_start(self, day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=self.tz)

    def deadline_of(self, road: _Road, day: date) -> datetime:
        d = road.config.deadline
        return datetime(day.year, day.month, day.day, d.hour, d.minute, d.second, tzinfo=self.tz)

    def _advance(self, now: datetime) -> list[Observation]:
        t = now.timestamp()
        if t < self._quiet_until and self._since is not None:
            return []  # the same local day, and no deadline due yet: the common case
        out: list[Observation] = []
        if self._since is None:
            self._since = now
        today = self._local_day(now)
        if self._day is None:
            self._day = today
        elif today > self._day:
            out += self._end_day(max(self._day_start(today), now))
            self._day = today
        next_due = (self._day_start(self._day) + timedelta(days=1)).timestamp()
        for road in self.roads:
            if road.id in self._judged:
                continue
            deadline = self.deadline_of(road, self._day)
            if now < deadline:
                next_due = min(next_due, deadline.timestamp())
                continue
            self._judged.add(road.id)
            if self._since > deadline:
                self.stats["coverage_deadline_not_watched"] += 1
                continue
            if self._passes.get(road.id, 0) >= road.config.passes:
                self.stats["coverage_segments_covered"] += 1
                continue
            self._open.add(road.id)
            self.stats["coverage_segments_uncovered"] += 1
            out.append(self._observation(road, "uncovered", deadline, now))
        self._quiet_until = next_due if today >= self._day else -math.inf
        return out

    def _end_day(self, noticed: datetime) -> list[Observation]:
        """`noticed`: when the box learnt the day had ended (its last_seen: a report stamped
        back at midnight would be late behind what the device has sent since)."""
        assert self._day is not None
        out = [
            self._observation(road, "missed", self.deadline_of(road, self._day), noticed)
            for road in self.roads
            if road.id in self._open
        ]
        self.stats["coverage_days"] += 1
        self._passes.clear()
        self._open.clear()
        self._judged.clear()
        self._trips.clear()
        return out

    def _progress(self, road: _Road, ts: datetime) -> Observation:
        assert self._day is not None
        done = self._passes[road.id] >= road.config.passes
        if road.id in self._open:
            if not done:
                return self._observation(road, "uncovered", self.deadline_of(road, self._day), ts)
            self._open.discard(road.id)
            self.stats["coverage_covered_late"] += 1
        state = "covered" if done else "partial"
        return self._observation(road, state, self._day_start(self._day), ts)

    def _observation(self, road: _Road, state: str, first: datetime, last: datetime) -> Observation:
        assert self._day is not None
        attributes: dict[str, Any] = {
            "name": road.config.name,
            "passes": self._passes.get(road.id, 0),
            "required": road.config.passes,
            "deadline": self.deadline_of(road, self._day).isoformat(),
            "day": self._day.isoformat(),
        }
        if state in ("uncovered", "missed"):
            attributes["segments"] = [asdict(f) for f in self.figures()]
        return Observation(
            kind=ObservationKind.COVERAGE,
            device_id=self.device_id,
            subject=SUBJECT,
            subject_id=road.id,
            first_seen=first,
            last_seen=max(first, last),
            zone_id=road.id,
            state=state,
            location=road.middle,
            attributes=attributes,
        )

    # ---- figures and state ----------------------------------------------------------------

    def figures(self) -> list[SegmentFigure]:
        """Every segment's passes today."""
        day = self._day
        out = []
        for road in self.roads:
            passes = self._passes.get(road.id, 0)
            deadline = "" if day is None else self.deadline_of(road, day).isoformat()
            out.append(
                SegmentFigure(
                    road.id,
                    road.config.name,
                    passes,
                    road.config.passes,
                    deadline,
                    passes >= road.config.passes,
                )
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "day": None if self._day is None else self._day.isoformat(),
            "since": None if self._since is None else self._since.isoformat(),
            "passes": dict(self._passes),
            "open": sorted(self._open),
            "judged": sorted(self._judged),
            "trips": {k: asdict(v) for k, v in self._trips.items()},
            "last": None if self._last is None else list(self._last),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a `snapshot()`; segments no longer configured are dropped."""
        ids = {road.id for road in self.roads}
        day, since, last = data.get("day"), data.get("since"), data.get("last")
        self._day = None if day is None else date.fromisoformat(day)
        self._since = None if since is None else datetime.fromisoformat(since)
        self._passes = {k: int(v) for k, v in (data.get("passes") or {}).items() if k in ids}
        self._open = {k for k in data.get("open") or () if k in ids}
        self._judged = {k for k in data.get("judged") or () if k in ids}
        self._trips = {k: _Traversal(**v) for k, v in (data.get("trips") or {}).items() if k in ids}
        self._last = None if last is None else (float(last[0]), float(last[1]), float(last[2]))
        self._quiet_until = -math.inf


def _grown(bounds: tuple[float, ...], by: float) -> tuple[float, float, float, float]:
    return (bounds[0] - by, bounds[1] - by, bounds[2] + by, bounds[3] + by)


def _within(bounds: tuple[float, float, float, float], x: float, y: float) -> bool:
    return bounds[0] <= x <= bounds[2] and bounds[1] <= y <= bounds[3]


def day_window(ts: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """The local day around `ts`: [midnight, next midnight)."""
    day = ts.astimezone(tz).date()
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    return start, start + timedelta(days=1)


__all__ = ["SUBJECT", "CoverageDetector", "SegmentFigure", "day_window"]
