"""Polygons and points of zones, shopfronts and routes: pixel or WGS-84 [lon, lat]."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictFloat
from shapely.geometry import Polygon
from shapely.validation import explain_validity

Coordinate = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Point = tuple[Coordinate, Coordinate]
"""Strict numbers: a quoted '12' or a `true` in a polygon is a typo, not a coordinate."""


def _check_polygon(points: list[Point], what: str) -> list[Point]:
    if len(points) < 3:
        raise ValueError(f"{what} needs at least 3 points, got {len(points)}")
    if len(set(points)) < 3:
        raise ValueError(f"{what} has fewer than 3 distinct points")
    polygon = Polygon(points)
    if polygon.convex_hull.area <= 0:
        raise ValueError(f"{what} is not a valid polygon: its points lie on one line (no area)")
    if not polygon.is_valid:
        raise ValueError(
            f"{what} is not a valid polygon: {explain_validity(polygon)} "
            "(edges must not cross or touch: list the corners in order round the outline)"
        )
    if polygon.area <= 0:
        raise ValueError(f"{what} has zero area")
    return points


MAX_PIXEL = 65535
"""Largest pixel coordinate of a camera zone (JPEG's and most codecs' largest frame side)."""


def _check_pixels(points: list[Point]) -> None:
    for x, y in points:
        if not (0 <= x <= MAX_PIXEL and 0 <= y <= MAX_PIXEL):
            raise ValueError(
                f"point [{x}, {y}] is not a pixel [x, y] of the image (0-{MAX_PIXEL}; "
                "camera zones are in image pixels)"
            )


def _check_lonlat(points: list[Point]) -> None:
    for lon, lat in points:
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError(f"point [{lon}, {lat}] is not [lon, lat] in degrees")
