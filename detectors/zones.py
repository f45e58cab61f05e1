"""Pixel zones of a camera and which tracks are in them, with hysteresis.

A track is in a zone by its footprint, the bottom centre of its box (where it touches the
ground). It enters when the footprint is inside the polygon; it leaves only once the footprint
has been outside the polygon grown by `margin_px` for `exit_s` seconds, so jitter at an edge
does not end a visit and restart its dwell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import shapely
from shapely.geometry import Polygon

from ingest.config import Zone


def footprint(box: Iterable[float]) -> tuple[float, float]:
    x1, _, x2, y2 = box
    return (x1 + x2) / 2.0, y2


@dataclass
class Visit:
    track_id: int
    zone: Zone
    entered: datetime
    last_inside: datetime
    outside_since: datetime | None = None


@dataclass(frozen=True)
class ZoneEvents:
    entered: list[Visit]
    left: list[Visit]
    """Visits that ended; `last_inside` is when the track was last in the zone."""


class PixelZones:
    def __init__(self, zones: Iterable[Zone], margin_px: float = 12.0, exit_s: float = 1.0):
        self.zones = list(zones)
        self._inner = [Polygon(z.polygon) for z in self.zones]
        self._outer = [p.buffer(margin_px) for p in self._inner]
        for polygon in (*self._inner, *self._outer):
            shapely.prepare(polygon)
        self.exit_after = timedelta(seconds=exit_s)
        self.visits: dict[tuple[int, str], Visit] = {}

    def update(self, footprints: Mapping[int, tuple[float, float]], ts: datetime) -> ZoneEvents:
        """Footprints of the tracks seen in this frame. Tracks not listed keep their visits
        (an occluded subject has not left); call `end_track` when a track is gone."""
        entered, left = [], []
        for track_id, (x, y) in footprints.items():
            for zone, inner, outer in zip(self.zones, self._inner, self._outer, strict=True):
                key = (track_id, zone.id)
                visit = self.visits.get(key)
                if visit is None:
                    if shapely.contains_xy(inner, x, y):
                        visit = Visit(track_id, zone, ts, ts)
                        self.visits[key] = visit
                        entered.append(visit)
                    continue
                if shapely.contains_xy(outer, x, y):
                    visit.last_inside = ts
                    visit.outside_since = None
                elif visit.outside_since is None:
                    visit.outside_since = ts
                elif ts - visit.outside_since >= self.exit_after:
                    left.append(self.visits.pop(key))
        return ZoneEvents(entered, left)

    def end_track(self, track_id: int) -> list[Visit]:
        ended = [v for key, v in self.visits.items() if key[0] == track_id]
        for visit in ended:
            del self.visits[(track_id, visit.zone.id)]
        return ended

    def in_zone(self, zone_id: str) -> list[Visit]:
        return [v for (_, z), v in self.visits.items() if z == zone_id]
