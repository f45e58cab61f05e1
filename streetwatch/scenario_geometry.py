"""Where the simulated street lies: the site's centre and flat local metres around it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from shapely.geometry import Polygon

from ingest.config import DeviceKind, SiteConfig

DEFAULT_CENTER = (31.19530, 121.43730)
"""(lat, lon) used when the config places nothing on the map (Xuhui, Shanghai)."""

M_PER_DEG = 6371008.8 * math.pi / 180.0


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """Flat east/north metres around an origin; ample for a few kilometres."""

    lat0: float
    lon0: float

    @property
    def _m_per_deg_lon(self) -> float:
        return M_PER_DEG * math.cos(math.radians(self.lat0))

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self._m_per_deg_lon, (lat - self.lat0) * M_PER_DEG

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return self.lat0 + y / M_PER_DEG, self.lon0 + x / self._m_per_deg_lon


class Loop:
    """A closed polyline in local metres, walked by distance."""

    def __init__(self, points: list[tuple[float, float]]) -> None:
        self.points = points
        self.segments: list[tuple[float, float, float, float, float]] = []
        start = 0.0
        for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True):
            length = math.hypot(x1 - x0, y1 - y0)
            if length == 0:
                continue
            self.segments.append((start, x0, y0, x1, y1))
            start += length
        self.length = start

    def at(self, s: float) -> tuple[float, float, float, float]:
        """(x, y, heading in degrees from north, distance to the nearer corner) at distance s."""
        s %= self.length
        index = len(self.segments) - 1
        for i, segment in enumerate(self.segments):
            if segment[0] > s:
                index = i - 1
                break
        begin, x0, y0, x1, y1 = self.segments[index]
        end = self.segments[index + 1][0] if index + 1 < len(self.segments) else self.length
        f = (s - begin) / (end - begin)
        heading = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
        corner = min(s - begin, end - s)
        return x0 + f * (x1 - x0), y0 + f * (y1 - y0), heading, corner


def site_center(config: SiteConfig) -> tuple[float, float]:
    """WGS-84 (lat, lon) of the site: device locations and shop fronts, else geofences."""
    points = [(d.location.lat, d.location.lon) for d in config.devices if d.location]
    points += [_centroid(m.shopfront) for m in config.merchants]
    if not points:
        points = [
            _centroid(zone.polygon)
            for d in config.devices
            if d.kind in (DeviceKind.GPS, DeviceKind.DRONE)
            for zone in d.zones
        ]
    if not points:
        return DEFAULT_CENTER
    return (
        sum(p[0] for p in points) / len(points),
        sum(p[1] for p in points) / len(points),
    )


def _centroid(lonlat: list[tuple[float, float]]) -> tuple[float, float]:
    point = Polygon(lonlat).centroid
    return point.y, point.x
