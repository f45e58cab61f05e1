"""What a drone's camera pipeline adds to a fixed camera's: subjects placed on the ground.

Each analysed frame, the footprint (bottom centre of the box) of every track is projected from
the drone's pose at the frame's time (detectors/telemetry_track.py, detectors/groundproj.py).
Zone membership is then decided on the ground, in metres: the drone's zones are geographic
[lon, lat] polygons, turned into local metres once (`GroundZones`), with the same hysteresis as
pixel zones but its margin in metres. A track whose footprint cannot be placed in a frame (stale
telemetry, a ray at the horizon) is left out of that frame's update, as an occluded one would
be: its visits stand, nothing new starts. Observations carry the subject's last placed position
as their location, and its uncertainty and the drone's own position as attributes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely

from detectors.geofence import LocalProjection
from detectors.groundproj import (
    GroundFix,
    Intrinsics,
    Limits,
    NotPlaced,
    Pose,
    Sigmas,
    locate_many,
    to_pixels,
)
from detectors.observation import GeoPoint
from detectors.telemetry_track import TelemetryTrack
from detectors.zones import PixelZones
from ingest.config import Device, Zone
from ingest.readings import DroneTelemetry

FORGET_AFTER = timedelta(minutes=10)
"""A track's last placement is kept this long after it was made (for its exit observation)."""


class GroundZones(PixelZones):
    """Geographic zones, decided in local metres: footprints are (east, north) in `projection`."""

    def __init__(
        self, zones: Iterable[Zone], projection: LocalProjection, margin_m: float, exit_s: float
    ) -> None:
        self.zones = list(zones)
        self._inner = [projection.polygon(z.polygon) for z in self.zones]
        self._outer = [p.buffer(margin_m) for p in self._inner]
        for polygon in (*self._inner, *self._outer):
            shapely.prepare(polygon)
        self.exit_after = timedelta(seconds=exit_s)
        self.visits = {}


@dataclass(frozen=True, slots=True)
class Placement:
    ts: datetime
    fix: GroundFix
    pose: Pose


class DroneLocator:
    def __init__(self, device: Device, stats: Counter[str] | None = None) -> None:
        if device.fov is None:
            raise ValueError(f"{device.id}: a drone camera needs `fov:` to place what it sees")
        fov = device.fov
        self.device_id = device.id
        self.fov = fov
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self.track = TelemetryTrack(
            fov.max_staleness_s,
            fixed_pitch_deg=fov.gimbal_pitch_deg,
            roll_deg=fov.roll_deg,
            stats=self.stats,
        )
        self.sigmas = Sigmas(**fov.sigma.model_dump())
        self.limits = Limits(fov.min_depression_deg, fov.max_range_m)
        self.placements: dict[int, Placement] = {}
        self.delay = timedelta(seconds=fov.frame_delay_s)
        self.projection = LocalProjection(0.0, 0.0)
        self._intrinsics: dict[tuple[int, int], Intrinsics] = {}
        self._pose: Pose | None = None
        """The pose of the last frame with one (for drawing the zones on the live view)."""

    def telemetry(self, ts: datetime, telemetry: DroneTelemetry) -> None:
        """A telemetry sample (from the analysis thread)."""
        self.track.add(ts, telemetry)

    def zones(self, zones: list[Zone], exit_s: float) -> GroundZones:
        """The drone's zones, in metres around their own middle."""
        self.projection = LocalProjection.around(p for z in zones for p in z.polygon) or (
            LocalProjection(0.0, 0.0)
        )
        return GroundZones(zones, self.projection, self.fov.zone_margin_m, exit_s)

    def place(
        self, footprints: Mapping[int, tuple[float, float]], ts: datetime, size: tuple[int, int]
    ) -> dict[int, tuple[float, float]]:
        """Pixel footprints (width, height of the frame: `size`) → ground footprints in the
        zones' metres; tracks that cannot be placed in this frame are left out."""
        placed: dict[int, tuple[float, float]] = {}
        if footprints:
            try:
                pose = self.track.pose_at(ts - self.delay)
            except NotPlaced:
                self.stats["refused_frames"] += 1
                self.stats["not_placed"] += len(footprints)
                return placed
            pose = Pose(
                pose.lat,
                pose.lon,
                pose.alt_m - self.fov.ground_alt_m,
                pose.heading_deg,
                pose.pitch_deg,
                pose.roll_deg,
            )
            self._pose = pose
            fixes = locate_many(
                list(footprints.values()), self._k(size), pose, self.sigmas, self.limits
            )
            for track_id, fix in zip(footprints, fixes, strict=True):
                if isinstance(fix, NotPlaced):
                    self.stats[f"refused_{fix.reason}"] += 1
                    self.stats["not_placed"] += 1
                    continue
                self.stats["placed"] += 1
                self.placements[track_id] = Placement(ts, fix, pose)
                placed[track_id] = self.projection.xy(fix.lon, fix.lat)
        for track_id in [t for t, p in self.placements.items() if ts - p.ts > FORGET_AFTER]:
            del self.placements[track_id]
        return placed

    def view_device(self, device: Device, size: tuple[int, int]) -> Device:
        """`device` with its zones drawn into the image (pixel polygons) from the last pose,
        for the live view; zones partly behind the camera, or all without a pose, are left
        out."""
        pose = self._pose
        if pose is None:
            return device.model_copy(update={"zones": []})
        local = LocalProjection(pose.lon, pose.lat)
        k = self._k(size)
        drawn = []
        for zone in device.zones:
            pixels = to_pixels(np.array([local.xy(lon, lat) for lon, lat in zone.polygon]), k, pose)
            if np.isfinite(pixels).all():
                polygon = [(float(u), float(v)) for u, v in np.clip(pixels, -1e5, 1e5)]
                drawn.append(zone.model_copy(update={"polygon": polygon}))
        return device.model_copy(update={"zones": drawn})

    def location(self, track_id: int) -> GeoPoint | None:
        placement = self.placements.get(track_id)
        return None if placement is None else GeoPoint(placement.fix.lon, placement.fix.lat)

    def attributes(self, track_id: int) -> dict[str, Any]:
        """`ground` (where the subject was, ± metres) and `drone` (where the drone was)."""
        placement = self.placements.get(track_id)
        if placement is None:
            return {}
        fix, pose = placement.fix, placement.pose
        return {
            "ground": {
                "lon": round(fix.lon, 7),
                "lat": round(fix.lat, 7),
                "uncertainty_m": round(fix.uncertainty_m, 2),
                "error_ellipse_m": [round(fix.major_m, 2), round(fix.minor_m, 2)],
                "ground_range_m": round(fix.ground_range_m, 1),
                "depression_deg": round(fix.depression_deg, 1),
                "bearing_deg": round(math.degrees(math.atan2(fix.east_m, fix.north_m)) % 360, 1),
                "at": placement.ts.isoformat(),
                "method": "drone flat-ground projection",
            },
            "drone": {
                "lon": round(pose.lon, 7),
                "lat": round(pose.lat, 7),
                "alt_m": round(pose.alt_m, 1),
                "heading_deg": round(pose.heading_deg, 1),
                "gimbal_pitch_deg": round(pose.pitch_deg, 1),
            },
        }

    def _k(self, size: tuple[int, int]) -> Intrinsics:
        k = self._intrinsics.get(size)
        if k is None:
            width, height = size
            k = Intrinsics.from_fov(self.fov.horizontal_fov_deg, width, height, self.fov.vfov_deg)
            self._intrinsics[size] = k
        return k
