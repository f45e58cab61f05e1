"""A drone camera's optics and error budget: what turns a pixel into a ground position.

The `fov` section of a drone with `detect:` (detectors/groundproj.py uses it). The field of view
is given directly (`hfov_deg`) or as a lens and sensor (`focal_mm` + `sensor_width_mm`); pixels
are square unless `vfov_deg` says otherwise. The sigmas are the 1-σ errors of what the drone
reports; they set the uncertainty each ground position carries.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from ingest.config.common import Finite, Strict


class AttitudeSigma(Strict):
    """1-σ errors of the telemetry and of the box's footprint."""

    heading_deg: Finite = Field(2.0, ge=0, le=45)
    """Compass heading (drones' magnetometers: 1-3°)."""
    pitch_deg: Finite = Field(1.0, ge=0, le=45)
    """Gimbal pitch (gimbal encoders and IMU: under 1°)."""
    roll_deg: Finite = Field(0.5, ge=0, le=45)
    """Camera roll about its axis (a stabilised gimbal keeps it near 0)."""
    alt_m: Finite = Field(1.0, ge=0, le=100)
    """Height above the ground (barometric altitude over flat ground: about 1 m)."""
    position_m: Finite = Field(1.5, ge=0, le=100)
    """Horizontal GNSS position of the drone."""
    pixel_px: Finite = Field(3.0, ge=0, le=100)
    """Where in the box the subject touches the ground (its bottom centre)."""


class DroneCamera(Strict):
    hfov_deg: Finite | None = Field(None, gt=1, lt=179)
    """Horizontal field of view of the frames as they arrive (after any crop to 16:9)."""
    focal_mm: Finite | None = Field(None, gt=0, le=2000)
    sensor_width_mm: Finite | None = Field(None, gt=0, le=100)
    """With `focal_mm`, instead of `hfov_deg`: the width of the sensor the frames cover."""
    vfov_deg: Finite | None = Field(None, gt=1, lt=179)
    """Vertical field of view where pixels are not square (None: square pixels)."""
    roll_deg: Finite = Field(0.0, ge=-90, le=90)
    """Fixed camera roll (a stabilised gimbal: 0)."""
    gimbal_pitch_deg: Finite | None = Field(None, ge=-90, le=0)
    """Pitch of a fixed camera mount, used when the telemetry carries no `gimbal_pitch`
    (None: such telemetry places nothing). -90 looks straight down."""
    ground_alt_m: Finite = Field(0.0, ge=-500, le=9000)
    """Altitude of the flat ground in the telemetry's `alt_m` reference: 0 where `alt_m` is the
    height above the take-off point (most drones), the site's elevation where it is above sea
    level."""
    sigma: AttitudeSigma = AttitudeSigma()
    max_staleness_s: Finite = Field(1.0, gt=0, le=60)
    """A frame more than this far from the nearest telemetry (or between two samples further
    apart than twice this) is not placed: the drone may have turned meanwhile."""
    frame_delay_s: Finite = Field(0.0, ge=0, le=10)
    """How far a frame's timestamp lags the moment it was taken (a live stream stamped on
    arrival: its latency); the pose is taken from the telemetry that much earlier."""
    min_depression_deg: Finite = Field(5.0, ge=0.5, le=60)
    """Rays flatter than this below the horizon are not placed: their ground point runs away
    with the smallest pitch error."""
    max_range_m: Finite = Field(500.0, gt=0, le=10_000)
    """Ground points further than this from the drone are not placed."""
    zone_margin_m: Finite = Field(2.0, ge=0, le=100)
    """Hysteresis of the geographic zones: a subject leaves once this far outside."""

    @model_validator(mode="after")
    def _one_field_of_view(self) -> DroneCamera:
        lens = (self.focal_mm is not None, self.sensor_width_mm is not None)
        if self.hfov_deg is not None and any(lens):
            raise ValueError("give hfov_deg or focal_mm with sensor_width_mm, not both")
        if self.hfov_deg is None and not all(lens):
            raise ValueError(
                "the field of view is missing: give hfov_deg (degrees across the frame) or "
                "focal_mm with sensor_width_mm"
            )
        return self

    @property
    def horizontal_fov_deg(self) -> float:
        if self.hfov_deg is not None:
            return self.hfov_deg
        assert self.focal_mm is not None and self.sensor_width_mm is not None
        return math.degrees(2 * math.atan(self.sensor_width_mm / (2 * self.focal_mm)))
