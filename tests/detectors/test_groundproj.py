"""Drone ground projection on constructed geometry with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.geofence import LocalProjection
from detectors.groundproj import (
    Intrinsics,
    Limits,
    NotPlaced,
    Pose,
    Sigmas,
    ground_offset,
    locate,
    locate_many,
    to_pixels,
)

K = Intrinsics.from_fov(90.0, 800, 600)
"""fx = fy = 400 px: a pixel 400 px right of the centre is 45° off the axis."""
LAT, LON = 31.1952, 121.4373


def test_intrinsics_from_a_lens_and_sensor_match_the_field_of_view() -> None:
    assert K.fx == pytest.approx(400.0) and K.fy == pytest.approx(400.0)
    assert (K.cx, K.cy) == (400.0, 300.0)
    k = Intrinsics.from_fov(90.0, 800, 600, vfov_deg=60.0)
    assert k.fy == pytest.approx(300 / math.tan(math.radians(30)))


def test_nadir_centre_is_under_the_drone() -> None:
    fix = locate(400, 300, K, Pose(LAT, LON, 50.0, 37.0, -90.0))
    assert fix.east_m == pytest.approx(0, abs=1e-9) and fix.north_m == pytest.approx(0, abs=1e-9)
    assert (fix.lon, fix.lat) == pytest.approx((LON, LAT))
    assert fix.depression_deg == pytest.approx(90.0)
    assert fix.slant_range_m == pytest.approx(50.0)


def test_nadir_edges_lie_at_altitude_times_the_half_angle() -> None:
    """Looking straight down, heading north: the top of the frame is north, the right is east."""
    east, north, _ = ground_offset(400, 0, K, 40.0, 0.0, -90.0)
    assert (east, north) == pytest.approx((0.0, 40.0 * 300 / 400))
    east, north, _ = ground_offset(800, 300, K, 40.0, 0.0, -90.0)
    assert (east, north) == pytest.approx((40.0, 0.0), abs=1e-9)


def test_pitch_45_places_the_centre_at_the_altitude_ahead() -> None:
    fix = locate(400, 300, K, Pose(LAT, LON, 60.0, 0.0, -45.0))
    assert fix.north_m == pytest.approx(60.0) and fix.east_m == pytest.approx(0.0, abs=1e-9)
    assert fix.ground_range_m == pytest.approx(60.0)
    assert fix.slant_range_m == pytest.approx(60.0 * math.sqrt(2))
    assert fix.depression_deg == pytest.approx(45.0)
    back = LocalProjection(LON, LAT).xy(fix.lon, fix.lat)
    assert back == pytest.approx((0.0, 60.0), abs=1e-6)
    # the row 400 px below the centre looks 45° further down: straight down
    east, north, _ = ground_offset(400, 700, K, 60.0, 0.0, -45.0)
    assert (east, north) == pytest.approx((0.0, 0.0), abs=1e-6)


@pytest.mark.parametrize(
    ("heading", "expected"),
    [(0.0, (0.0, 30.0)), (90.0, (30.0, 0.0)), (180.0, (0.0, -30.0)), (270.0, (-30.0, 0.0))],
)
def test_heading_turns_the_ground_point_round_the_drone(heading, expected) -> None:
    east, north, _ = ground_offset(400, 300, K, 30.0, heading, -45.0)
    assert (east, north) == pytest.approx(expected, abs=1e-9)


def test_heading_60_puts_a_point_right_of_centre_clockwise_of_it() -> None:
    east, north, _ = ground_offset(800, 300, K, 30.0, 60.0, -90.0)
    # right of the image is 90° clockwise of the heading: bearing 150°
    assert math.degrees(math.atan2(east, north)) == pytest.approx(150.0)
    assert math.hypot(east, north) == pytest.approx(30.0)


def test_roll_turns_the_image_about_its_axis() -> None:
    """Roll turns the frame about the optical axis: at nadir, heading north, the right edge's
    ground point turns from due east (bearing 90°) to 100° when rolled 10°; the centre stays."""
    east, north, _ = ground_offset(400, 300, K, 50.0, 0.0, -90.0, roll_deg=10.0)
    assert (east, north) == pytest.approx((0.0, 0.0), abs=1e-9)
    east, north, _ = ground_offset(800, 300, K, 50.0, 0.0, -90.0, roll_deg=10.0)
    assert math.degrees(math.atan2(east, north)) == pytest.approx(100.0)
    assert math.hypot(east, north) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("v", "pitch", "reason"),
    [(300, 0.0, "above_horizon"), (0, -20.0, "above_horizon"), (300, 10.0, "above_horizon")],
)
def test_rays_at_or_above_the_horizon_are_refused(v, pitch, reason) -> None:
    with pytest.raises(NotPlaced) as refused:
        locate(400, v, K, Pose(LAT, LON, 50.0, 0.0, pitch))
    assert refused.value.reason == reason


def test_grazing_and_far_rays_are_refused() -> None:
    with pytest.raises(NotPlaced) as refused:
        locate(400, 300, K, Pose(LAT, LON, 50.0, 0.0, -3.0))
    assert refused.value.reason == "too_oblique"
    with pytest.raises(NotPlaced) as refused:
        locate(400, 300, K, Pose(LAT, LON, 50.0, 0.0, -6.0), limits=Limits(5.0, 300.0))
    assert refused.value.reason == "too_far"
    with pytest.raises(NotPlaced) as refused:
        locate(400, 300, K, Pose(LAT, LON, -1.0, 0.0, -90.0))
    assert refused.value.reason == "below_ground"


def test_uncertainty_grows_monotonically_with_obliquity() -> None:
    pitches = [-90, -75, -60, -45, -35, -25, -18, -12, -8, -6]
    fixes = [locate(400, 300, K, Pose(LAT, LON, 50.0, 0.0, p)) for p in pitches]
    sizes = [f.uncertainty_m for f in fixes]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert [f.ground_range_m for f in fixes] == sorted(f.ground_range_m for f in fixes)
    # straight down only the GNSS, altitude-free and small angle terms remain
    assert sizes[0] < 3.0 and sizes[-1] > 10 * sizes[0]
    # the error ellipse stretches along the line of sight as the ray flattens
    assert fixes[-1].major_m > 3 * fixes[-1].minor_m


def test_uncertainty_matches_the_analytic_pitch_term() -> None:
    """Only a pitch error: d(range)/d(pitch) = h / sin²(depression)."""
    only_pitch = Sigmas(heading_deg=0, pitch_deg=1.0, roll_deg=0, alt_m=0, position_m=0, pixel_px=0)
    fix = locate(400, 300, K, Pose(LAT, LON, 50.0, 0.0, -30.0), sigmas=only_pitch)
    expected = 50.0 / math.sin(math.radians(30.0)) ** 2 * math.radians(1.0)
    assert fix.uncertainty_m == pytest.approx(expected, rel=1e-3)
    assert fix.minor_m == pytest.approx(0.0, abs=1e-6)


def test_uncertainty_grows_with_altitude_at_the_same_angle() -> None:
    sizes = [locate(400, 300, K, Pose(LAT, LON, h, 0.0, -40.0)).uncertainty_m for h in (20, 60)]
    assert sizes[1] > sizes[0]


def test_many_at_once_match_one_at_a_time() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        pose = Pose(LAT, LON, rng.uniform(10, 120), rng.uniform(0, 360), rng.uniform(-90, -10),
                    rng.uniform(-5, 5))  # fmt: skip
        pixels = [(float(u), float(v)) for u, v in rng.uniform((0, 0), (800, 600), (30, 2))]
        for (u, v), fix in zip(pixels, locate_many(pixels, K, pose), strict=True):
            try:
                east, north, depression = ground_offset(
                    u, v, K, pose.alt_m, pose.heading_deg, pose.pitch_deg, pose.roll_deg
                )
            except NotPlaced as refused:
                assert isinstance(fix, NotPlaced) and fix.reason == refused.reason
                continue
            if isinstance(fix, NotPlaced):  # a perturbed ray crossed the horizon
                assert fix.reason == "too_oblique" and depression < 6
                continue
            assert (fix.east_m, fix.north_m) == pytest.approx((east, north), abs=1e-6)
            assert fix.depression_deg == pytest.approx(depression)
    assert locate_many([], K, Pose(LAT, LON, 50.0, 0.0, -90.0)) == []


def test_ground_points_project_back_to_their_pixels() -> None:
    pose = Pose(LAT, LON, 35.0, 123.0, -28.0, 2.0)
    pixels = [(100.0, 550.0), (400.0, 300.0), (790.0, 200.0)]
    fixes = locate_many(pixels, K, pose)
    ground = np.array([(f.east_m, f.north_m) for f in fixes if not isinstance(f, NotPlaced)])
    assert to_pixels(ground, K, pose) == pytest.approx(np.array(pixels), abs=1e-6)
    behind = to_pixels(
        np.array([[0.0, 0.0], [-50 * math.sin(2.15), -50 * math.cos(2.15)]]), K, pose
    )
    assert np.isfinite(behind[0]).all() and np.isnan(behind[1]).all()
