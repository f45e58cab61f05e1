"""Per-device detector settings: geomagnetic occupancy, GPS filters and routes, video."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from shapely.geometry import Polygon

from ingest.config.camera_extras import LeftObject, Tiling
from ingest.config.common import Finite, Strict
from ingest.config.geometry import Point, _check_lonlat


class GeomagSettings(Strict):
    """Occupancy detection of a raw geomagnetic sensor (x/y/z in µT); see detectors/geomag.py."""

    enter_ut: Finite = Field(10.0, gt=0)
    """Deviation from the vacant baseline (vector magnitude, µT) at which a car may be there."""
    exit_ut: Finite = Field(5.0, gt=0)
    """Deviation below which the bay may be vacant again; below enter_ut (hysteresis)."""
    min_occupied_s: Finite = Field(4.0, ge=0)
    """How long the deviation stays above enter_ut before the bay counts as occupied."""
    min_vacant_s: Finite = Field(6.0, ge=0)
    """How long it stays below exit_ut before the bay counts as vacant again."""
    drift_tau_s: Finite = Field(900.0, gt=0)
    """Time constant of the baseline following slow drift (temperature), only while vacant."""
    stale_after_s: Finite = Field(180.0, gt=0)
    """No reading for this long: a `stale` device-health observation."""
    flat_after_s: Finite = Field(120.0, gt=0)
    """Identical readings for this long: a `flat_line` device-health observation."""
    flat_epsilon_ut: Finite = Field(0.01, ge=0)
    """Readings closer than this on every axis count as identical."""
    baseline_ut: tuple[Finite, Finite, Finite] | None = None
    """The empty bay's field measured at installation; else the first readings are taken."""

    @model_validator(mode="after")
    def _hysteresis(self) -> GeomagSettings:
        if self.exit_ut >= self.enter_ut:
            raise ValueError(
                f"exit_ut ({self.exit_ut}) must be below enter_ut ({self.enter_ut}): "
                "the gap between them is the hysteresis that stops flicker"
            )
        return self


class GpsFilters(Strict):
    """Fix filters applied before geofences and speed (as GPS trackers such as Traccar do)."""

    max_hdop: Finite | None = Field(5.0, gt=0)
    """Fixes with a larger horizontal dilution of precision are dropped (None: no check)."""
    min_sats: int | None = Field(4, ge=0, le=99)
    """Fixes from fewer satellites are dropped (None: no check)."""
    max_speed_kmh: Finite = Field(180.0, gt=0)
    """A jump from the last good fix implying a higher speed is dropped as an outlier."""
    max_future_s: Finite = Field(10.0, ge=0)
    """A fix timestamped further than this after its arrival is dropped."""
    stale_after_s: Finite = Field(300.0, gt=0)
    """No fix for this long: a `stale` device-health observation."""


class Route(Strict):
    """An approved route: the corridor within `buffer_m` metres of a WGS-84 [lon, lat] line."""

    line: list[Point]
    buffer_m: Finite = Field(30.0, gt=0, le=10_000)
    """How far from the line (either side, metres) the vehicle may be and still be on route."""
    min_off_s: Finite = Field(10.0, ge=0)
    """How long the vehicle stays outside the corridor before it counts as off route."""

    @field_validator("line")
    @classmethod
    def _line(cls, value: list[Point]) -> list[Point]:
        if len(value) < 2:
            raise ValueError(f"a route line needs at least 2 points, got {len(value)}")
        _check_lonlat(value)
        if len(set(value)) < 2:
            raise ValueError("a route line has zero length (all points are the same)")
        return value


class MotionGate(Strict):
    """Frame differencing in front of the detector (see detectors/motion.py)."""

    enabled: bool = True
    threshold: int = Field(25, ge=1, le=255)
    """Grey-level change (0-255) for a pixel to count as moved."""
    min_area_px: int = Field(400, ge=1)
    """Smallest moved region worth running the detector on, in full-frame pixels."""
    width: int = Field(320, ge=64, le=4096)
    """Frames are compared downscaled to this width."""


class CameraDetect(Strict):
    """Detection, tracking and dwell of one camera or drone video stream (detectors/camera.py)."""

    weights: Path
    """Detector weights: ultralytics .pt/.onnx/OpenVINO folder, a YOLOX ONNX, a YOLOv8/11
    TFLite (see README, "Cameras")."""
    family: Literal["ultralytics", "yolox", "yolov8-tflite"] | None = None
    """The model family, where the file does not say (None: told by the file)."""
    runtime: Literal["auto", "openvino", "onnxruntime", "litert", "ultralytics"] = "auto"
    """Inference engine; auto picks the fastest measured for the family on this CPU."""
    imgsz: int = Field(640, ge=32, le=4096, multiple_of=32)
    conf: Finite = Field(0.35, gt=0, lt=1)
    iou: Finite = Field(0.5, gt=0, lt=1)
    classes: dict[str, str] = {}  # noqa: RUF012 - pydantic copies field defaults
    """Model class name → subject (person, bicycle, car, goods, ...); unlisted classes are
    ignored. Empty: every class, named as the model names it."""
    fps: Finite | None = Field(None, gt=0, le=120)
    """Frames analysed per second (None: every frame the source delivers)."""
    redetect_s: Finite = Field(5.0, gt=0, le=600)
    """Full-frame detection cadence that re-confirms stationary subjects."""
    stationary_misses: int = Field(3, ge=1, le=100)
    """Full-frame checks in a row that miss a stationary track before it ends."""
    lost_s: Finite = Field(2.0, gt=0, le=600)
    """A moving track unseen for this long has left."""
    occlusion_hold_s: Finite = Field(30.0, ge=0, le=600)
    """A still subject of `hold_subjects` that is lost (hidden by a passing bus) stays where it
    stood this long, and a track of its kind that reappears there takes its id back; 0: off.
    Fixed cameras only (detectors/camera_hold.py)."""
    hold_subjects: list[str] = ["car", "truck", "bus", "van", "motorcycle", "bicycle"]  # noqa: RUF012
    zone_margin_px: Finite = Field(12.0, ge=0)
    """Hysteresis: a footprint must leave the polygon by this much before it has left."""
    zone_exit_s: Finite = Field(1.0, ge=0)
    """... and stay out this long."""
    emit_interval_s: Finite = Field(1.0, gt=0)
    """Observations per situation at most this often (and on every change)."""
    preroll_s: Finite = Field(10.0, ge=0, le=600)
    """Seconds of encoded frames kept for evidence clips."""
    jpeg_quality: int = Field(80, ge=10, le=100)
    motion: MotionGate = MotionGate()
    tiling: Tiling = Tiling()
    left_object: LeftObject = LeftObject()


class HomographyPair(Strict):
    """One image point and where it lies on the ground (WGS-84)."""

    pixel: Point
    geo: Point
    """[lon, lat]"""

    @field_validator("geo")
    @classmethod
    def _lonlat(cls, value: Point) -> Point:
        _check_lonlat([value])
        return value


def _check_homography(pairs: list[HomographyPair]) -> list[HomographyPair]:
    if len(pairs) < 4:
        raise ValueError(f"a homography needs at least 4 pixel/geo pairs, got {len(pairs)}")
    for what in ("pixel", "geo"):
        points = [getattr(pair, what) for pair in pairs]
        if len(set(points)) < len(points):
            raise ValueError(f"two pairs share the same {what} point")
        if Polygon(points).convex_hull.area <= 0:
            raise ValueError(f"the {what} points lie on one line; spread them over the ground")
    return pairs
