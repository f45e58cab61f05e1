"""Geomagnetic occupancy on generated traces: drift, noise, cars arriving, idling, parked next
door, and sensors that die (flat line, silence)."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.geomag import GeomagDetector, OnBoardBay
from detectors.observation import Observation, ObservationKind
from ingest.config import Device

T0 = datetime(2025, 5, 1, 2, 0, tzinfo=UTC)
BASE = (33.0, -3.0, 35.0)
PERIOD_S = 2.0
Vec = tuple[float, float, float]


def device(**geomag: object) -> Device:
    return Device.model_validate(
        {
            "id": "mag-1",
            "kind": "geomagnetic",
            "bay": "fire-lane-9",
            "bay_kind": "fire_lane",
            "location": {"lat": 31.1954, "lon": 121.437},
            "geomag": geomag or None,
        }
    )


def at(t: float) -> datetime:
    return T0 + timedelta(seconds=t)


def seconds(ts: datetime) -> float:
    return (ts - T0).total_seconds()


def car(arrive: float, leave: float, delta: Vec, ramp: float = 3.0) -> Callable[[float], Vec]:
    """A car's added field: ramps in over `ramp` s at `arrive`, out at `leave`."""

    def field(t: float) -> Vec:
        if t <= arrive or t >= leave + ramp:
            return (0.0, 0.0, 0.0)
        share = min(1.0, (t - arrive) / ramp) if t < leave else 1.0 - (t - leave) / ramp
        return (delta[0] * share, delta[1] * share, delta[2] * share)

    return field


def trace(
    duration_s: float,
    *,
    seed: int = 1,
    noise_ut: float = 0.3,
    drift_ut_per_h: Vec = (0.0, 0.0, 0.0),
    cars: Iterable[Callable[[float], Vec]] = (),
    vibration: Callable[[float], float] = lambda t: 0.0,
) -> list[tuple[float, Vec]]:
    """Samples every 2 s: baseline + linear drift + cars + Gaussian noise (+ engine vibration)."""
    rng = random.Random(seed)
    cars = list(cars)
    samples = []
    t = 0.0
    while t < duration_s:
        value = list(BASE)
        for axis in range(3):
            value[axis] += drift_ut_per_h[axis] * t / 3600
        for field in cars:
            for axis, d in enumerate(field(t)):
                value[axis] += d
        shake = vibration(t)
        for axis in range(3):
            value[axis] += rng.gauss(0, noise_ut) + rng.gauss(0, shake)
        samples.append((t, (value[0], value[1], value[2])))
        t += PERIOD_S
    return samples


def run(detector: GeomagDetector, samples: list[tuple[float, Vec]]) -> list[Observation]:
    out: list[Observation] = []
    for t, value in samples:
        out += detector.process(at(t), value, at(t + 0.2))
    return out


def changes(observations: list[Observation]) -> list[tuple[str, float]]:
    """(state, start second) of each occupancy situation, in order of first report."""
    seen: dict[str, tuple[str, float]] = {}
    for obs in observations:
        if obs.kind is ObservationKind.OCCUPANCY and obs.key not in seen:
            seen[obs.key] = (obs.state or "", seconds(obs.first_seen))
    return list(seen.values())


def test_drift_and_noise_alone_never_occupy_and_the_baseline_follows() -> None:
    detector = GeomagDetector(device(), Counter())
    # 12 µT/h on z: without a baseline that follows, the deviation would cross enter_ut
    # (10 µT) within the first hour.
    samples = trace(3 * 3600, drift_ut_per_h=(2.0, -3.0, 12.0))
    assert changes(run(detector, samples)) == []
    assert detector.deviation_ut < 5.0
    assert detector.baseline is not None
    assert abs(detector.baseline[2] - (BASE[2] + 36.0)) < 5.0
    frozen = GeomagDetector(device(drift_tau_s=1e9), Counter())
    assert [state for state, _ in changes(run(frozen, samples))] == ["occupied"]


def test_a_car_arriving_and_leaving_gives_occupied_then_vacant_with_start_times() -> None:
    detector = GeomagDetector(device(), Counter())
    samples = trace(900, cars=[car(200, 600, (12.0, -8.0, -25.0))], drift_ut_per_h=(0, 0, 3))
    observations = run(detector, samples)
    (occupied, t_occ), (vacant, t_vac) = changes(observations)
    assert occupied == "occupied" and vacant == "vacant"
    assert 200 <= t_occ <= 204
    assert 600 <= t_vac <= 604
    stay = [o for o in observations if o.state == "occupied"]
    assert all(o.subject == "car" and o.subject_id == "fire-lane-9" for o in stay)
    assert all(o.zone_id == "fire-lane-9" and o.zone_kind == "fire_lane" for o in stay)
    assert stay[0].location is not None and stay[0].location.lat == 31.1954
    # the occupied situation's last update ends where the vacancy starts
    assert seconds(stay[-1].last_seen) == t_vac
    assert stay[-1].dwell_s > 390
    # while occupied, updates come at most about once per second (here: every reading)
    assert len(stay) >= 190
    assert all(o.key == stay[0].key for o in stay)


def test_a_short_blip_under_the_minimum_duration_does_not_occupy() -> None:
    detector = GeomagDetector(device(min_occupied_s=6.0), Counter())
    samples = trace(300, cars=[car(100, 102, (0, 0, 40.0), ramp=0.5)])
    assert changes(run(detector, samples)) == []


def test_an_idling_car_with_engine_vibration_stays_one_occupied_stay() -> None:
    detector = GeomagDetector(device(), Counter())
    samples = trace(
        1800,
        cars=[car(100, 1500, (0.0, 15.0, 20.0))],
        vibration=lambda t: 4.0 if 100 < t < 1500 else 0.0,
    )
    assert [state for state, _ in changes(run(detector, samples))] == ["occupied", "vacant"]


def test_a_car_in_the_neighbouring_bay_leaves_this_bay_vacant() -> None:
    detector = GeomagDetector(device(), Counter())
    samples = trace(1800, cars=[car(300, 1200, (2.0, 1.0, -4.0))])  # ~4.6 µT next door
    assert changes(run(detector, samples)) == []


def test_a_flat_line_after_a_car_parked_is_device_health_never_vacant() -> None:
    detector = GeomagDetector(device(flat_after_s=60.0), Counter())
    samples = trace(400, cars=[car(100, 10_000, (0, 0, 30.0))])
    stuck = samples[-1][1]
    samples += [(400 + 2 * i, stuck) for i in range(200)]
    observations = run(detector, samples)
    assert [state for state, _ in changes(observations)] == ["occupied"]
    health = [o for o in observations if o.kind is ObservationKind.DEVICE_HEALTH]
    assert health and health[0].state == "flat_line"
    assert health[0].subject_id == "mag-1" and health[0].zone_id == "fire-lane-9"
    assert 398 <= seconds(health[0].first_seen) <= 400
    assert seconds(health[0].last_seen) >= 458


def test_a_sensor_stuck_at_a_wild_value_never_flips_the_bay() -> None:
    detector = GeomagDetector(device(flat_after_s=60.0), Counter())
    samples = trace(200) + [(200 + 2 * i, (0.0, 0.0, 0.0)) for i in range(100)]
    observations = run(detector, samples)
    assert changes(observations) == []
    health = [o.state for o in observations if o.kind is ObservationKind.DEVICE_HEALTH]
    assert health[:1] == ["flat_line"]


def test_a_silent_sensor_goes_stale_not_vacant_and_recovers() -> None:
    stats: Counter[str] = Counter()
    detector = GeomagDetector(device(stale_after_s=120.0), stats)
    samples = trace(300, cars=[car(100, 10_000, (0, 0, 30.0))])
    observations = run(detector, samples)
    assert detector.tick(at(350)) == []
    stale = detector.tick(at(430))
    assert [o.state for o in stale] == ["stale"]
    assert stale[0].attributes["bay_state"] == "occupied"
    assert detector.tick(at(440)) == []  # not repeated every tick
    # the car is still there when the sensor comes back: no vacant, one recovery
    back = run(detector, trace(700, seed=2, cars=[car(-1, 10_000, (0, 0, 30.0))])[250:])
    assert [o.state for o in back if o.kind is ObservationKind.DEVICE_HEALTH] == ["ok"]
    assert [state for state, _ in changes(observations + back)] == ["occupied"]
    assert stats["device_stale"] == 1


def test_recalibration_takes_the_current_field_as_empty() -> None:
    detector = GeomagDetector(device(), Counter())
    # a skip loaded onto the bay for good: the operator checks, it is not a car
    samples = trace(400, cars=[car(100, 10_000, (0, 0, 20.0))])
    observations = run(detector, samples)
    assert [state for state, _ in changes(observations)] == ["occupied"]
    detector.recalibrate()
    later = run(detector, trace(800, seed=3, cars=[car(-1, 10_000, (0, 0, 20.0))])[205:])
    ended = [o for o in later if o.kind is ObservationKind.OCCUPANCY]
    assert [o.state for o in ended] == ["occupied", "vacant"]
    assert all(o.attributes.get("recalibrated") for o in ended)
    assert detector.state.value == "vacant" and detector.deviation_ut < 3.0


def test_a_configured_baseline_sees_a_car_that_was_there_at_start() -> None:
    detector = GeomagDetector(device(baseline_ut=list(BASE)), Counter())
    samples = trace(100, cars=[car(-10, 10_000, (0, 0, 30.0))])
    assert changes(run(detector, samples)) == [("occupied", 0.0)]


def test_out_of_order_readings_are_counted_and_ignored() -> None:
    stats: Counter[str] = Counter()
    detector = GeomagDetector(device(), stats)
    run(detector, trace(60))
    assert detector.process(at(10), (0.0, 0.0, 0.0), at(61)) == []
    assert stats["geomag_out_of_order"] == 1


def test_on_board_decisions_go_straight_through() -> None:
    bay = OnBoardBay(device(), Counter())
    states = [(0, False), (30, False), (41, True), (60, True), (90, True), (130, False)]
    out: list[Observation] = []
    for t, occupied in states:
        out += bay.process(at(t), occupied, at(t))
    assert changes(out) == [("occupied", 41.0), ("vacant", 130.0)]
    occupied = [o for o in out if o.state == "occupied"]
    assert seconds(occupied[-1].last_seen) == 130.0  # the stay ends where vacancy starts


noise = st.tuples(*[st.floats(-2.5, 2.5, allow_nan=False)] * 3)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(noise, min_size=10, max_size=400),
    st.tuples(*[st.floats(-6.0, 6.0)] * 3),
)
def test_noise_below_the_threshold_never_occupies(values: list[Vec], drift: Vec) -> None:
    """Bounded noise (|n| <= 4.4 µT) plus drift of up to 6 µT/h per axis: always vacant."""
    detector = GeomagDetector(device(), Counter())
    samples = [
        (
            PERIOD_S * i,
            tuple(b + d * PERIOD_S * i / 3600 + n for b, d, n in zip(BASE, drift, v, strict=True)),
        )
        for i, v in enumerate(values)
    ]
    assert changes(run(detector, samples)) == []  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(*[st.floats(-7.0, 7.0, allow_nan=False)] * 3), min_size=10, max_size=300),
    st.floats(18.0, 80.0),
    st.floats(0.0, 2 * math.pi),
)
def test_noise_on_a_parked_car_never_makes_it_vacant(
    values: list[Vec], magnitude: float, angle: float
) -> None:
    """Vibration up to 12 µT on a deviation of 18 µT or more stays above exit_ut (5 µT)."""
    detector = GeomagDetector(device(baseline_ut=list(BASE)), Counter())
    delta = (magnitude * math.cos(angle), magnitude * math.sin(angle), 0.0)
    samples = [
        (PERIOD_S * i, tuple(b + d + n for b, d, n in zip(BASE, delta, v, strict=True)))
        for i, v in enumerate(values)
    ]
    states = [state for state, _ in changes(run(detector, samples))]  # type: ignore[arg-type]
    assert "vacant" not in states
