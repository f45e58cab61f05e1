"""A sanitation vehicle's daily round: the road segments it must sweep or wash, each with how
many passes it needs by what local time (see detectors/coverage.py)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ingest.config.common import Finite, SafeId, Strict
from ingest.config.geometry import Point, _check_lonlat
from ingest.coords import to_wgs84

Direction = Literal["any", "forward"]
LineCrs = Literal["wgs84", "gcj02", "bd09"]


class SweepSegment(Strict):
    """One stretch of road: a polyline of [lon, lat] points in the section's `crs`."""

    id: SafeId
    name: str = ""
    line: list[Point]
    passes: int = Field(1, ge=1, le=50)
    """Passes needed each local day (a street swept on both sides: 2)."""
    deadline: dt.time
    """Local time of day (site timezone) by which the passes must be done, e.g. '09:30'."""
    buffer_m: Finite | None = Field(None, gt=0, le=200)
    """Metres either side of the line a fix may be and still follow it (None: the section's)."""
    direction: Direction | None = None
    """`forward`: only passes in the line's own direction count (None: the section's)."""

    @field_validator("line")
    @classmethod
    def _line(cls, value: list[Point]) -> list[Point]:
        if len(value) < 2:
            raise ValueError(f"a segment line needs at least 2 points, got {len(value)}")
        _check_lonlat(value)
        if len(set(value)) < 2:
            raise ValueError("a segment line has zero length (all points are the same)")
        return value

    @field_validator("deadline", mode="before")
    @classmethod
    def _deadline(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 09:30 as the sexagesimal number 570
            hours, minutes = divmod(value, 60)
            raise ValueError(
                f"deadline is the number {value} (YAML reads an unquoted {hours}:{minutes:02d} "
                "as minutes): quote the time of day, e.g. deadline: '09:30'"
            )
        return value


class Sweeping(Strict):
    """What a sweeper or washer must cover each day, and what counts as a pass."""

    crs: LineCrs = "wgs84"
    """Datum the segment lines are drawn in (lines traced on an Amap/Tencent map: gcj02, on
    Baidu: bd09); they are converted to WGS-84 once, at load."""
    speed_kmh: tuple[Finite, Finite] = (3.0, 20.0)
    """Working speed [min, max]: faster is driving past, slower is standing."""
    buffer_m: Finite = Field(10.0, gt=0, le=200)
    min_fraction: Finite = Field(0.8, gt=0, le=1)
    """Share of a segment's length that one traversal must follow at working speed."""
    direction: Direction = "any"
    max_gap_s: Finite = Field(30.0, gt=0, le=3600)
    """Two fixes further apart in time than this do not vouch for the road between them."""
    segments: list[SweepSegment] = Field(min_length=1)

    @field_validator("speed_kmh")
    @classmethod
    def _speeds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 <= low < high <= 200:
            raise ValueError(f"speed_kmh [{low}, {high}] must be [min, max] with 0 <= min < max")
        return value

    @model_validator(mode="after")
    def _unique(self) -> Sweeping:
        seen: dict[str, int] = {}
        for index, segment in enumerate(self.segments):
            if segment.id in seen:
                raise ValueError(
                    f"segments[{index}]: segment id {segment.id!r} appears twice "
                    f"(first at segments[{seen[segment.id]}])"
                )
            seen[segment.id] = index
        return self

    def line_wgs84(self, segment: SweepSegment) -> list[tuple[float, float]]:
        """The segment's [lon, lat] points in WGS-84."""
        if self.crs == "wgs84":
            return [(lon, lat) for lon, lat in segment.line]
        out = []
        for lon, lat in segment.line:
            wlat, wlon = to_wgs84(lat, lon, self.crs)
            out.append((wlon, wlat))
        return out

    def buffer_of(self, segment: SweepSegment) -> float:
        return segment.buffer_m if segment.buffer_m is not None else self.buffer_m

    def direction_of(self, segment: SweepSegment) -> Direction:
        return segment.direction or self.direction
