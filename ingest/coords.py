"""WGS-84 <-> GCJ-02 <-> BD-09 conversions.

GCJ-02 is the obfuscated datum mandated for maps in mainland China; BD-09 is Baidu's further
offset of it. Both forward transforms are the published algorithms (Krasovsky ellipsoid
constants). Neither has a closed-form inverse: the inverses here iterate the forward transform
until it reproduces the input, which is accurate to millimetres instead of the tens of metres
that the usual one-step approximation leaves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from math import atan2, cos, pi, sin, sqrt

A = 6378245.0
EE = 0.00669342162296594323
X_PI = pi * 3000.0 / 180.0

CRS_NAMES = ("wgs84", "gcj02", "bd09")

LatLon = tuple[float, float]

_INVERSE_TOLERANCE_DEG = 1e-10
_INVERSE_MAX_ITERATIONS = 30


def out_of_china(lat: float, lon: float) -> bool:
    """Whether GCJ-02 leaves the point alone: outside mainland China's bounding box."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _gcj_offset(lat: float, lon: float) -> LatLon:
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = sqrt(abs(x))
    common = (20.0 * sin(6.0 * x * pi) + 20.0 * sin(2.0 * x * pi)) * 2.0 / 3.0

    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + common
    dlat += (20.0 * sin(y * pi) + 40.0 * sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * sin(y / 12.0 * pi) + 320.0 * sin(y * pi / 30.0)) * 2.0 / 3.0

    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + common
    dlon += (20.0 * sin(x * pi) + 40.0 * sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * sin(x / 12.0 * pi) + 300.0 * sin(x / 30.0 * pi)) * 2.0 / 3.0

    rad_lat = lat / 180.0 * pi
    magic = 1.0 - EE * sin(rad_lat) ** 2
    sqrt_magic = sqrt(magic)
    dlat = (dlat * 180.0) / ((A * (1.0 - EE)) / (magic * sqrt_magic) * pi)
    dlon = (dlon * 180.0) / (A / sqrt_magic * cos(rad_lat) * pi)
    return dlat, dlon


def wgs84_to_gcj02(lat: float, lon: float) -> LatLon:
    if out_of_china(lat, lon):
        return lat, lon
    dlat, dlon = _gcj_offset(lat, lon)
    return lat + dlat, lon + dlon


def gcj02_to_bd09(lat: float, lon: float) -> LatLon:
    z = sqrt(lon * lon + lat * lat) + 0.00002 * sin(lat * X_PI)
    theta = atan2(lat, lon) + 0.000003 * cos(lon * X_PI)
    return z * sin(theta) + 0.006, z * cos(theta) + 0.0065


def _bd09_to_gcj02_approx(lat: float, lon: float) -> LatLon:
    x = lon - 0.0065
    y = lat - 0.006
    z = sqrt(x * x + y * y) - 0.00002 * sin(y * X_PI)
    theta = atan2(y, x) - 0.000003 * cos(x * X_PI)
    return z * sin(theta), z * cos(theta)


def _invert(
    forward: Callable[[float, float], LatLon], lat: float, lon: float, guess: LatLon
) -> LatLon:
    """Solve forward(result) == (lat, lon) by fixed-point iteration from `guess`."""
    g_lat, g_lon = guess
    for _ in range(_INVERSE_MAX_ITERATIONS):
        f_lat, f_lon = forward(g_lat, g_lon)
        d_lat = f_lat - lat
        d_lon = f_lon - lon
        g_lat -= d_lat
        g_lon -= d_lon
        if abs(d_lat) < _INVERSE_TOLERANCE_DEG and abs(d_lon) < _INVERSE_TOLERANCE_DEG:
            break
    return g_lat, g_lon


def gcj02_to_wgs84(lat: float, lon: float) -> LatLon:
    if out_of_china(lat, lon):
        return lat, lon
    return _invert(wgs84_to_gcj02, lat, lon, (lat, lon))


def bd09_to_gcj02(lat: float, lon: float) -> LatLon:
    return _invert(gcj02_to_bd09, lat, lon, _bd09_to_gcj02_approx(lat, lon))


def wgs84_to_bd09(lat: float, lon: float) -> LatLon:
    return gcj02_to_bd09(*wgs84_to_gcj02(lat, lon))


def bd09_to_wgs84(lat: float, lon: float) -> LatLon:
    return gcj02_to_wgs84(*bd09_to_gcj02(lat, lon))


_TO_WGS84: dict[str, Callable[[float, float], LatLon]] = {
    "gcj02": gcj02_to_wgs84,
    "bd09": bd09_to_wgs84,
}


def to_wgs84(lat: float, lon: float, crs: str) -> LatLon:
    """Convert a coordinate in `crs` ("wgs84", "gcj02" or "bd09") to WGS-84."""
    if crs == "wgs84":
        return lat, lon
    try:
        convert = _TO_WGS84[crs]
    except KeyError:
        raise ValueError(f"crs={crs!r} is not one of {', '.join(CRS_NAMES)}") from None
    return convert(lat, lon)


def distance_m(a: LatLon, b: LatLon) -> float:
    """Great-circle distance in metres (haversine; ample for checking conversion error)."""
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = sin((lat2 - lat1) / 2) ** 2 + cos(lat1) * cos(lat2) * sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(min(1.0, sqrt(h)))
