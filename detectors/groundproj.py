"""Drone ground projection: a pixel of a drone's frame → where it lies on flat ground.

A pinhole camera at the drone's position, `alt_m` above flat ground, looking along the compass
`heading` (degrees clockwise from north) tilted by the gimbal `pitch` (0 level, -90 straight
down) and rolled by `roll` (positive: the camera's right side dips, as a drone banking right).
The ray through the pixel meets the ground at a point east/north of the drone in metres, turned
into WGS-84 on a local tangent plane around the drone (detectors/geofence.py's projection, exact
to well under a metre at the few hundred metres a drone camera sees).

The uncertainty propagates the 1-σ errors of pitch, heading, roll, altitude and the footprint
pixel through the projection (a numeric Jacobian, central differences) and adds the drone's
GNSS error: it grows with distance and, steeply, with obliquity, since a ray that grazes the
ground moves its ground point far for a small change of angle. Rays at or above the horizon,
too flat below it, or landing too far away are refused (`NotPlaced`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.geofence import LocalProjection


class NotPlaced(Exception):
    """The pixel has no trustworthy ground position; `reason` names why (a counter name)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Pose:
    """Where the camera is and where it looks, at one instant."""

    lat: float
    lon: float
    alt_m: float
    """Height above the ground plane."""
    heading_deg: float
    pitch_deg: float
    roll_deg: float = 0.0


@dataclass(frozen=True, slots=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (principal point at the frame centre)."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(
        cls, hfov_deg: float, width: int, height: int, vfov_deg: float | None = None
    ) -> Intrinsics:
        fx = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        fy = fx if vfov_deg is None else (height / 2) / math.tan(math.radians(vfov_deg) / 2)
        return cls(fx, fy, width / 2, height / 2)


@dataclass(frozen=True, slots=True)
class Sigmas:
    """1-σ errors: attitude in degrees, altitude and position in metres, the pixel in pixels."""

    heading_deg: float = 2.0
    pitch_deg: float = 1.0
    roll_deg: float = 0.5
    alt_m: float = 1.0
    position_m: float = 1.5
    pixel_px: float = 3.0


@dataclass(frozen=True, slots=True)
class Limits:
    min_depression_deg: float = 5.0
    max_range_m: float = 500.0


@dataclass(frozen=True, slots=True)
class GroundFix:
    lon: float
    lat: float
    east_m: float
    """Offset from the point under the drone."""
    north_m: float
    ground_range_m: float
    slant_range_m: float
    depression_deg: float
    """Angle of the ray below the horizon (90: straight down)."""
    uncertainty_m: float
    """1-σ radial error (DRMS: the root of the summed east and north variances)."""
    major_m: float
    """1-σ semi-major axis of the error ellipse (mostly along the line of sight)."""
    minor_m: float


def camera_axes(heading_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Rows: the image's right, the image's down and the optical axis, in (east, north, up)."""
    h, p, r = (math.radians(a) for a in (heading_deg, pitch_deg, roll_deg))
    forward = np.array([math.sin(h), math.cos(h), 0.0])
    right = np.array([math.cos(h), -math.sin(h), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    axis = math.cos(p) * forward + math.sin(p) * up
    down = math.sin(p) * forward - math.cos(p) * up
    return np.array(
        [
            math.cos(r) * right + math.sin(r) * down,
            -math.sin(r) * right + math.cos(r) * down,
            axis,
        ]
    )


def ray_enu(u: float, v: float, k: Intrinsics, heading_deg: float, pitch_deg: float,
            roll_deg: float = 0.0) -> np.ndarray:  # fmt: skip
    """Unit ray (east, north, up) through pixel (u, v): x right, y down in the image."""
    right, down, axis = camera_axes(heading_deg, pitch_deg, roll_deg)
    ray = (u - k.cx) / k.fx * right + (v - k.cy) / k.fy * down + axis
    return ray / np.linalg.norm(ray)


def to_pixels(east_north: np.ndarray, k: Intrinsics, pose: Pose) -> np.ndarray:
    """Ground points (east, north of the drone, metres) → pixels (u, v); NaN for points
    behind the camera. The inverse of the projection, for drawing geographic zones."""
    points = np.asarray(east_north, dtype=np.float64).reshape(-1, 2)
    world = np.column_stack([points, np.full(len(points), -pose.alt_m)])
    cam = world @ camera_axes(pose.heading_deg, pose.pitch_deg, pose.roll_deg).T
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(cam[:, 2] > 1e-6, cam[:, 2], np.nan)
        return np.column_stack([k.cx + k.fx * cam[:, 0] / z, k.cy + k.fy * cam[:, 1] / z])


def ground_offset(
    u: float,
    v: float,
    k: Intrinsics,
    alt_m: float,
    heading_deg: float,
    pitch_deg: float,
    roll_deg: float = 0.0,
    limits: Limits | None = None,
) -> tuple[float, float, float]:
    """(east, north, depression°) of the ground point of pixel (u, v) from under the camera."""
    limits = limits or Limits()
    ray = ray_enu(u, v, k, heading_deg, pitch_deg, roll_deg)
    t = alt_m / -ray[2] if ray[2] < 0 else math.nan
    east, north = float(t * ray[0]), float(t * ray[1])
    refusal = _refusal(alt_m, float(ray[2]), east, north, limits)
    if refusal is not None:
        raise refusal
    depression = math.degrees(math.asin(min(1.0, -float(ray[2]))))
    return east, north, depression


_STEPS = np.array([1e-3, 1e-3, 1e-3, 1e-2, 0.5, 0.5])
"""Central-difference steps: pitch, heading, roll (°), altitude (m), u, v (px)."""
_PERTURB = np.vstack([np.zeros(6), *(sign * np.eye(6)[i] for i in range(6) for sign in (1, -1))])
"""The base parameters, then each one stepped up and down: 13 rows."""


def locate(
    u: float,
    v: float,
    k: Intrinsics,
    pose: Pose,
    sigmas: Sigmas | None = None,
    limits: Limits | None = None,
) -> GroundFix:
    """The ground position of pixel (u, v) seen from `pose`, with its uncertainty."""
    (fix,) = locate_many([(u, v)], k, pose, sigmas, limits)
    if isinstance(fix, NotPlaced):
        raise fix
    return fix


def locate_many(
    pixels: Sequence[tuple[float, float]],
    k: Intrinsics,
    pose: Pose,
    sigmas: Sigmas | None = None,
    limits: Limits | None = None,
) -> list[GroundFix | NotPlaced]:
    """`locate` for many pixels of one frame at once (numpy over pixels and perturbations):
    a GroundFix or the NotPlaced saying why, per pixel, in order."""
    sigmas = sigmas or Sigmas()
    limits = limits or Limits()
    if not pixels:
        return []
    uv = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    base = np.column_stack(
        [
            np.full(len(uv), pose.pitch_deg),
            np.full(len(uv), pose.heading_deg),
            np.full(len(uv), pose.roll_deg),
            np.full(len(uv), pose.alt_m),
            uv,
        ]
    )
    params = base[:, None, :] + _PERTURB[None, :, :] * _STEPS  # (M, 13, 6)
    east, north, rz = _ground(params, k)
    variances = (
        np.array(
            [
                sigmas.pitch_deg,
                sigmas.heading_deg,
                sigmas.roll_deg,
                sigmas.alt_m,
                sigmas.pixel_px,
                sigmas.pixel_px,
            ]
        )
        ** 2
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        jacobian = np.stack(
            [
                (east[:, 1::2] - east[:, 2::2]) / (2 * _STEPS),
                (north[:, 1::2] - north[:, 2::2]) / (2 * _STEPS),
            ],
            axis=1,
        )  # (M, 2, 6)
        covariance = (jacobian * variances) @ jacobian.transpose(0, 2, 1)
    covariance += sigmas.position_m**2 * np.eye(2)
    local = LocalProjection(pose.lon, pose.lat)
    out: list[GroundFix | NotPlaced] = []
    for m in range(len(uv)):
        refusal = _refusal(pose.alt_m, float(rz[m, 0]), east[m, 0], north[m, 0], limits)
        if refusal is None and not np.all(rz[m] < 0):
            refusal = NotPlaced("too_oblique", "the ray grazes the horizon")
        if refusal is not None:
            out.append(refusal)
            continue
        e, n = float(east[m, 0]), float(north[m, 0])
        minor, major = (math.sqrt(max(0.0, x)) for x in np.linalg.eigvalsh(covariance[m]))
        lon, lat = local.lonlat(e, n)
        ground = math.hypot(e, n)
        out.append(
            GroundFix(
                lon=lon,
                lat=lat,
                east_m=e,
                north_m=n,
                ground_range_m=ground,
                slant_range_m=math.hypot(ground, pose.alt_m),
                depression_deg=math.degrees(math.asin(min(1.0, -rz[m, 0]))),
                uncertainty_m=math.sqrt(float(np.trace(covariance[m]))),
                major_m=major,
                minor_m=minor,
            )
        )
    return out


def _ground(params: np.ndarray, k: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """East, north of the ground points and the rays' up component, for rows of
    (pitch, heading, roll, alt, u, v); `ray_enu` and `ground_offset` written over arrays."""
    p, h, r = (np.radians(params[..., i]) for i in range(3))
    alt, u, v = params[..., 3], params[..., 4], params[..., 5]
    sh, ch, sp, cp, sr, cr = np.sin(h), np.cos(h), np.sin(p), np.cos(p), np.sin(r), np.cos(r)
    x, y = (u - k.cx) / k.fx, (v - k.cy) / k.fy
    ray_e = x * (cr * ch + sr * sp * sh) + y * (-sr * ch + cr * sp * sh) + cp * sh
    ray_n = x * (-cr * sh + sr * sp * ch) + y * (sr * sh + cr * sp * ch) + cp * ch
    ray_u = x * (-sr * cp) + y * (-cr * cp) + sp
    norm = np.sqrt(ray_e**2 + ray_n**2 + ray_u**2)
    rz = ray_u / norm
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rz < 0, alt / -rz, np.nan)
    return t * ray_e / norm, t * ray_n / norm, rz


def _refusal(
    alt_m: float, rz: float, east: float, north: float, limits: Limits
) -> NotPlaced | None:
    if alt_m <= 0:
        return NotPlaced("below_ground", f"altitude {alt_m:.1f} m above the ground")
    depression = math.degrees(math.asin(max(-1.0, min(1.0, -rz))))
    if depression <= 0:
        return NotPlaced("above_horizon", f"the ray is {-depression:.1f}° above the horizon")
    if depression < limits.min_depression_deg:
        return NotPlaced(
            "too_oblique",
            f"the ray is {depression:.1f}° below the horizon "
            f"(under {limits.min_depression_deg:g}°)",
        )
    if math.hypot(east, north) > limits.max_range_m:
        return NotPlaced(
            "too_far", f"{math.hypot(east, north):.0f} m away (over {limits.max_range_m:g} m)"
        )
    return None
