"""WGS-84 geofences and route corridors measured in metres.

Degrees are not metres: a degree of longitude is about 95 km at Shanghai's latitude and 111 km at
the equator. Each vehicle gets a local tangent-plane projection (equirectangular around the
middle of its zones and route), in which shapely works in plain metres. Within 20 km of the
origin its scale error stays under about 0.3 %, ample for city geofences and corridors of tens
of metres.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shapely import prepared
from shapely.geometry import LineString, Point, Polygon

from ingest.config import Route, Zone

EARTH_RADIUS_M = 6371008.8
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0


@dataclass(frozen=True, slots=True)
class LocalProjection:
    """East/north metres around (lon0, lat0)."""

    lon0: float
    lat0: float

    @classmethod
    def around(cls, points: Iterable[tuple[float, float]]) -> LocalProjection | None:
        """Centred on the bounding box of [lon, lat] points; None when there are none."""
        pts = list(points)
        if not pts:
            return None
        lons = [p[0] for p in pts]
        lats = [p[1] for p in pts]
        return cls((min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2)

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (
            (lon - self.lon0) * M_PER_DEG * math.cos(math.radians(self.lat0)),
            (lat - self.lat0) * M_PER_DEG,
        )

    def lonlat(self, x: float, y: float) -> tuple[float, float]:
        return (
            self.lon0 + x / (M_PER_DEG * math.cos(math.radians(self.lat0))),
            self.lat0 + y / M_PER_DEG,
        )

    def polygon(self, lonlat: Sequence[tuple[float, float]]) -> Polygon:
        return Polygon([self.xy(lon, lat) for lon, lat in lonlat])

    def line(self, lonlat: Sequence[tuple[float, float]]) -> LineString:
        return LineString([self.xy(lon, lat) for lon, lat in lonlat])


class Geofence:
    """One zone of a vehicle, as a polygon in the vehicle's local metres."""

    def __init__(self, zone: Zone, projection: LocalProjection) -> None:
        self.zone = zone
        self.polygon = projection.polygon(zone.polygon)
        self._prepared = prepared.prep(self.polygon)

    def contains(self, xy: tuple[float, float]) -> bool:
        return bool(self._prepared.covers(Point(xy)))


class Corridor:
    """An approved route: everything within `buffer_m` of the route line."""

    def __init__(self, route: Route, projection: LocalProjection) -> None:
        self.route = route
        self.line = projection.line(route.line)
        self.buffer_m = route.buffer_m
        self.area = self.line.buffer(route.buffer_m)

    def distance_m(self, xy: tuple[float, float]) -> float:
        """Distance from the route line (0 on it)."""
        return float(self.line.distance(Point(xy)))

    def contains(self, xy: tuple[float, float]) -> bool:
        return self.distance_m(xy) <= self.buffer_m


def projection_for(zones: Iterable[Zone], route: Route | None) -> LocalProjection | None:
    points: list[tuple[float, float]] = [p for zone in zones for p in zone.polygon]
    if route is not None:
        points += list(route.line)
    return LocalProjection.around(points)


__all__ = ["Corridor", "Geofence", "LocalProjection", "projection_for"]
