"""A drone camera's locator: the `fov` section, footprints placed into geographic zones, and
refusals that leave visits standing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from detectors.drone_locator import DroneLocator
from detectors.geofence import LocalProjection
from ingest.config import Device
from ingest.config.drone_camera import DroneCamera
from ingest.readings import DroneTelemetry

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
LAT, LON = 31.1944, 121.4360
ORIGIN = LocalProjection(LON, LAT)


def square(east: float, north: float, half: float) -> list[tuple[float, float]]:
    corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
    return [ORIGIN.lonlat(east + x, north + y) for x, y in corners]


def drone(**fov) -> Device:
    return Device.model_validate(
        {
            "id": "drone-9",
            "kind": "drone",
            "stream": "webrtc",
            "detect": {"weights": "model.onnx"},
            "fov": {"hfov_deg": 110, **fov},
            "zones": [
                {"id": "ahead", "kind": "no_parking", "polygon": square(0.0, 50.0, 5.0)},
                {"id": "east", "kind": "fire_lane", "polygon": square(50.0, 0.0, 5.0)},
            ],
        }
    )


def test_fov_section_is_checked() -> None:
    assert DroneCamera(focal_mm=24, sensor_width_mm=36).horizontal_fov_deg == pytest.approx(
        2 * math.degrees(math.atan(36 / 48))
    )
    with pytest.raises(ValidationError, match="field of view is missing"):
        DroneCamera()
    with pytest.raises(ValidationError, match="not both"):
        DroneCamera(hfov_deg=80, focal_mm=24, sensor_width_mm=36)
    with pytest.raises(ValidationError, match="needs `fov`"):
        Device.model_validate({"id": "d", "kind": "drone", "detect": {"weights": "m.onnx"}})
    with pytest.raises(ValidationError, match="fov is for drone devices"):
        Device.model_validate({"id": "c", "kind": "camera", "fov": {"hfov_deg": 80}})


def test_footprints_enter_the_geographic_zone_they_stand_in() -> None:
    device = drone()
    locator = DroneLocator(device)
    zones = locator.zones(device.zones, exit_s=1.0)
    # 50 m up, pitched 45° down, heading north: the frame centre is 50 m north of the drone
    locator.telemetry(T0, DroneTelemetry(LAT, LON, 50.0, 0.0, -45.0))
    placed = locator.place({1: (400.0, 300.0), 2: (400.0, 0.0)}, T0, (800, 600))
    events = zones.update(placed, T0)
    assert [(v.track_id, v.zone.id) for v in events.entered] == [(1, "ahead")]
    location = locator.location(1)
    assert location is not None
    assert ORIGIN.xy(location.lon, location.lat) == pytest.approx((0.0, 50.0), abs=0.01)
    attributes = locator.attributes(1)
    assert attributes["drone"] == {
        "lon": LON,
        "lat": LAT,
        "alt_m": 50.0,
        "heading_deg": 0.0,
        "gimbal_pitch_deg": -45.0,
    }
    assert attributes["ground"]["ground_range_m"] == pytest.approx(50.0, abs=0.1)
    assert attributes["ground"]["bearing_deg"] == pytest.approx(0.0, abs=0.1)
    # track 2 looks above the horizon (the top row is 47° up from the axis): refused, counted
    assert 2 not in placed and locator.location(2) is None
    assert locator.stats["refused_above_horizon"] == 1 and locator.stats["placed"] == 1

    # the drone turns east: the same pixel now stands in the east zone; the north visit ends
    # once its footprint has been outside the zone plus margin for exit_s
    for s in (1.0, 2.5):
        ts = T0 + timedelta(seconds=s)
        locator.telemetry(ts, DroneTelemetry(LAT, LON, 50.0, 90.0, -45.0))
        events = zones.update(locator.place({1: (400.0, 300.0)}, ts, (800, 600)), ts)
    assert {(v.track_id, v.zone.id) for v in events.left} == {(1, "ahead")}
    assert set(zones.visits) == {(1, "east")}


def test_stale_telemetry_places_nothing_and_visits_stand() -> None:
    device = drone(max_staleness_s=0.5)
    locator = DroneLocator(device)
    zones = locator.zones(device.zones, exit_s=0.0)
    locator.telemetry(T0, DroneTelemetry(LAT, LON, 50.0, 0.0, -45.0))
    zones.update(locator.place({1: (400.0, 300.0)}, T0, (800, 600)), T0)
    later = T0 + timedelta(seconds=3)
    placed = locator.place({1: (400.0, 300.0), 3: (100.0, 500.0)}, later, (800, 600))
    assert placed == {}
    zones.update(placed, later)
    assert set(zones.visits) == {(1, "ahead")}
    assert locator.stats["refused_stale_telemetry"] == 1
    assert locator.stats["refused_frames"] == 1 and locator.stats["not_placed"] == 2


def test_ground_altitude_and_a_fixed_mount() -> None:
    """Telemetry above sea level over ground at 12 m, a camera fixed straight down."""
    device = drone(ground_alt_m=12.0, gimbal_pitch_deg=-90.0)
    locator = DroneLocator(device)
    locator.zones(device.zones, exit_s=1.0)
    locator.telemetry(T0, DroneTelemetry(LAT, LON, 52.0, 0.0, None))
    locator.place({1: (800.0, 300.0)}, T0, (800, 600))
    attributes = locator.attributes(1)
    assert attributes["drone"]["alt_m"] == 40.0
    # the right edge at nadir, heading north: due east, 40 m × tan(110° / 2) away
    expected = 40.0 * math.tan(math.radians(55.0))
    assert attributes["ground"]["ground_range_m"] == pytest.approx(expected, abs=0.1)
    assert attributes["ground"]["bearing_deg"] == pytest.approx(90.0, abs=0.1)


def test_the_live_view_draws_the_zones_where_they_lie_in_the_image() -> None:
    device = drone()
    locator = DroneLocator(device)
    locator.zones(device.zones, exit_s=1.0)
    assert locator.view_device(device, (800, 600)).zones == []  # no pose yet
    locator.telemetry(T0, DroneTelemetry(LAT, LON, 50.0, 0.0, -45.0))
    locator.place({1: (400.0, 300.0)}, T0, (800, 600))
    view = locator.view_device(device, (800, 600))
    # the zone 50 m ahead surrounds the frame centre; the one 50 m east lies at the right
    # edge (in front of the camera: drawn)
    ahead, east = view.zones
    xs, ys = zip(*ahead.polygon, strict=True)
    assert min(xs) < 400 < max(xs) and min(ys) < 300 < max(ys)
    assert min(x for x, _ in east.polygon) > max(xs) and max(x for x, _ in east.polygon) > 800
    assert device.zones[0].polygon[0][0] > 121  # the device itself keeps its geography


def test_a_live_streams_latency_takes_the_pose_from_earlier() -> None:
    device = drone(frame_delay_s=0.4, max_staleness_s=0.1)
    locator = DroneLocator(device)
    locator.zones(device.zones, exit_s=1.0)
    locator.telemetry(T0, DroneTelemetry(LAT, LON, 50.0, 0.0, -45.0))
    locator.telemetry(T0 + timedelta(seconds=0.2), DroneTelemetry(LAT, LON, 50.0, 90.0, -45.0))
    # the frame stamped 0.4 s after the first sample was taken with it: facing north
    locator.place({1: (400.0, 300.0)}, T0 + timedelta(seconds=0.4), (800, 600))
    assert locator.attributes(1)["drone"]["heading_deg"] == 0.0
    assert locator.attributes(1)["ground"]["at"] == (T0 + timedelta(seconds=0.4)).isoformat()
