"""Geofences, speed and the route corridor of one vehicle, in metres on WGS-84 coordinates."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.geofence import LocalProjection
from detectors.gps import GpsDetector
from detectors.gps_filters import Candidate
from detectors.observation import Observation, ObservationKind
from ingest.config import Device
from ingest.coords import distance_m

T0 = datetime(2025, 5, 1, 2, 0, tzinfo=UTC)
LAT0, LON0 = 31.1950, 121.4400
M_PER_DEG_LAT = 6371008.8 * math.pi / 180


def lonlat(east_m: float, north_m: float) -> tuple[float, float]:
    """A point east/north of the origin, on the sphere (independent of the detector's maths)."""
    lat = LAT0 + north_m / M_PER_DEG_LAT
    lon = LON0 + east_m / (M_PER_DEG_LAT * math.cos(math.radians(LAT0)))
    return lon, lat


def square(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [lonlat(x0, y0), lonlat(x1, y0), lonlat(x1, y1), lonlat(x0, y1)]


def vehicle(**fields: object) -> Device:
    return Device.model_validate({"id": "truck-1", "kind": "gps", **fields})


def at(t: float) -> datetime:
    return T0 + timedelta(seconds=t)


def feed(
    detector: GpsDetector, track: list[tuple[float, float, float, float | None]]
) -> list[Observation]:
    """(t, east m, north m, speed km/h or None) fixes."""
    out: list[Observation] = []
    for t, east, north, speed in track:
        lon, lat = lonlat(east, north)
        out += detector.process(
            Candidate(ts=at(t), lat=lat, lon=lon, received_ts=at(t + 0.3)), speed
        )
    return out


def of(kind: ObservationKind, observations: list[Observation]) -> list[Observation]:
    return [o for o in observations if o.kind is kind]


def test_the_local_projection_measures_metres() -> None:
    rng = random.Random(7)
    projection = LocalProjection(LON0, LAT0)
    for _ in range(200):
        a = lonlat(rng.uniform(-5000, 5000), rng.uniform(-5000, 5000))
        b = lonlat(rng.uniform(-5000, 5000), rng.uniform(-5000, 5000))
        true = distance_m((a[1], a[0]), (b[1], b[0]))
        flat = math.dist(projection.xy(*a), projection.xy(*b))
        assert abs(flat - true) <= 0.003 * true + 0.01


SCHOOL = {"id": "school", "kind": "restricted", "polygon": square(100, -50, 200, 50)}


def test_enter_inside_exit_with_dwell() -> None:
    detector = GpsDetector(vehicle(zones=[SCHOOL]), Counter())
    # east at 10 m/s along y=0: inside for x in [100, 200] = t in [10, 20]
    observations = feed(detector, [(t, 10.0 * t, 0.0, 36.0) for t in range(0, 31)])
    fence = of(ObservationKind.GEOFENCE, observations)
    states = [o.state for o in fence]
    assert states[0] == "enter" and states[-1] == "exit"
    assert set(states[1:-1]) == {"inside"}
    assert len({o.key for o in fence}) == 1
    enter, exit_ = fence[0], fence[-1]
    assert enter.first_seen == at(10) and enter.zone_id == "school"
    assert enter.zone_kind == "restricted" and enter.subject == "vehicle"
    assert enter.subject_id == "truck-1" and enter.attributes["speed_kmh"] == 36.0
    assert exit_.last_seen == at(21) and exit_.dwell_s == 11.0
    assert [o.last_seen for o in fence] == sorted(o.last_seen for o in fence)


def test_dwell_grows_on_tick_while_parked_inside() -> None:
    detector = GpsDetector(vehicle(zones=[SCHOOL]), Counter())
    feed(detector, [(t, 150.0, 0.0, 0.0) for t in range(0, 3)])
    updates = detector.tick(at(60)) + detector.tick(at(60.5)) + detector.tick(at(120))
    assert [(o.state, o.dwell_s) for o in updates] == [("inside", 60.0), ("inside", 120.0)]


def test_one_stray_fix_neither_enters_nor_exits() -> None:
    detector = GpsDetector(vehicle(zones=[SCHOOL]), Counter())
    track = [(t, 90.0, 0.0, 5.0) for t in range(0, 5)]
    track += [(5, 105.0, 0.0, 5.0)] + [(t, 90.0, 0.0, 5.0) for t in range(6, 10)]
    assert of(ObservationKind.GEOFENCE, feed(detector, track)) == []
    track = [(t, 150.0, 0.0, 5.0) for t in range(10, 15)]
    track += [(15, 95.0, 0.0, 5.0)] + [(t, 150.0, 0.0, 5.0) for t in range(16, 20)]
    states = [o.state for o in of(ObservationKind.GEOFENCE, feed(detector, track))]
    assert states[0] == "enter" and "exit" not in states


def test_speeding_needs_the_minimum_duration_and_ends() -> None:
    detector = GpsDetector(vehicle(speed_limit_kmh=40, speeding_min_s=5), Counter())
    speeds = [30.0] * 10 + [48.0, 52.0, 44.0] + [30.0] * 5  # 3 s over: not speeding
    speeds += [45.0, 55.0, 61.0, 58.0, 50.0, 47.0, 46.0, 45.0] + [35.0] * 5
    track = [(float(t), 10.0 * t, 0.0, s) for t, s in enumerate(speeds)]
    speeding = of(ObservationKind.SPEEDING, feed(detector, track))
    assert [o.state for o in speeding] == ["over", "over", "over", "ok"]  # from t=23
    assert {o.key for o in speeding} == {speeding[0].key}
    assert speeding[0].first_seen == at(18) and speeding[-1].last_seen == at(26)
    assert speeding[-1].attributes["max_speed_kmh"] == 61.0
    assert speeding[0].attributes["limit_kmh"] == 40.0


def test_speed_is_implied_from_positions_when_the_fix_has_none() -> None:
    detector = GpsDetector(vehicle(speed_limit_kmh=40, speeding_min_s=3), Counter())
    track = [(float(t), 15.0 * t, 0.0, None) for t in range(10)]  # 54 km/h
    speeding = of(ObservationKind.SPEEDING, feed(detector, track))
    assert speeding and speeding[0].state == "over"
    assert abs(speeding[0].attributes["speed_kmh"] - 54.0) < 0.5


ROUTE = {"line": [lonlat(-500, 0), lonlat(500, 0)], "buffer_m": 25, "min_off_s": 10}


def test_inside_the_corridor_in_metres_is_on_route() -> None:
    detector = GpsDetector(vehicle(route=ROUTE), Counter())
    track = [(float(t), -400 + 10.0 * t, 22.0 * (-1) ** t, 36.0) for t in range(80)]
    assert of(ObservationKind.OFF_ROUTE, feed(detector, track)) == []


def test_off_route_and_back() -> None:
    detector = GpsDetector(vehicle(route=ROUTE), Counter())
    track = [(float(t), -400 + 10.0 * t, 0.0, 36.0) for t in range(10)]
    track += [(float(t), -400 + 10.0 * t, 40.0, 36.0) for t in range(10, 40)]
    track += [(float(t), -400 + 10.0 * t, 5.0, 36.0) for t in range(40, 50)]
    off = of(ObservationKind.OFF_ROUTE, feed(detector, track))
    assert off[0].state == "off" and off[0].first_seen == at(10) and off[0].last_seen == at(20)
    assert abs(off[0].attributes["distance_m"] - 40.0) < 0.5
    assert off[-1].state == "back" and off[-1].last_seen == at(40)
    assert {o.state for o in off[1:-1]} == {"off"}
    assert len({o.key for o in off}) == 1
    assert off[0].subject == "vehicle" and off[0].attributes["buffer_m"] == 25.0


def test_a_short_excursion_is_not_off_route() -> None:
    detector = GpsDetector(vehicle(route=ROUTE), Counter())
    track = [(float(t), -400 + 10.0 * t, 60.0 if 10 <= t < 16 else 0.0, 36.0) for t in range(40)]
    assert of(ObservationKind.OFF_ROUTE, feed(detector, track)) == []


def test_a_silent_vehicle_goes_stale_and_recovers() -> None:
    stats: Counter[str] = Counter()
    detector = GpsDetector(vehicle(filters={"stale_after_s": 60}), stats)
    feed(detector, [(float(t), 0.0, 0.0, 0.0) for t in range(5)])
    assert detector.tick(at(50)) == []
    stale = detector.tick(at(100))
    assert [(o.kind, o.state, o.subject_id) for o in stale] == [
        (ObservationKind.DEVICE_HEALTH, "stale", "truck-1")
    ]
    back = feed(detector, [(200.0, 1.0, 0.0, 0.0)])
    assert [o.state for o in back] == ["ok"] and back[0].key == stale[0].key
    assert stats["device_stale"] == 1


def test_a_vehicle_sending_only_rejected_fixes_goes_stale() -> None:
    detector = GpsDetector(vehicle(filters={"stale_after_s": 60}), Counter())
    feed(detector, [(0.0, 0.0, 0.0, 0.0)])
    for t in range(1, 100):
        lon, lat = lonlat(0.0, 0.0)
        detector.process(Candidate(ts=at(t), lat=lat, lon=lon, valid=False, received_ts=at(t)))
    assert [o.state for o in detector.tick(at(100))] == ["stale"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 5.0), st.floats(-30.0, 30.0)), min_size=1, max_size=150))
def test_zone_situations_are_always_well_formed(steps: list[tuple[float, float]]) -> None:
    """Whatever the track: per situation enter, inside..., at most one exit; one at a time."""
    detector = GpsDetector(vehicle(zones=[SCHOOL]), Counter())
    t, east = 0.0, 150.0
    track = []
    for dt, move in steps:
        t += dt
        east = min(400.0, max(-100.0, east + move))
        track.append((t, east, 0.0, None))
    fence = of(ObservationKind.GEOFENCE, feed(detector, track))
    open_key: str | None = None
    for obs in fence:
        if obs.state == "enter":
            assert open_key is None
            open_key = obs.key
        else:
            assert obs.key == open_key
            if obs.state == "exit":
                open_key = None
        assert obs.first_seen <= obs.last_seen
