"""SensorDetectors: readings in, observations out; and the simulator's own street through it."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detectors.observation import Observation, ObservationKind
from detectors.sensors import SensorDetectors
from ingest.config import SiteConfig, load_config
from ingest.decoders import decode
from ingest.readings import (
    DroneTelemetry,
    GeomagField,
    GeomagState,
    GpsFix,
    Payload,
    Reading,
    Snapshot,
    Stream,
    TimeFlag,
)
from ingest.registry import DeviceRegistry
from streetwatch.scenario import build_scenario, car_visits
from tests.conftest import REPO

T0 = datetime(2025, 5, 1, 2, 0, tzinfo=UTC)


def at(t: float) -> datetime:
    return T0 + timedelta(seconds=t)


def reading(device_id: str, stream: Stream, t: float, payload: Payload, **kw: object) -> Reading:
    fields: dict[str, object] = {
        "key": f"{device_id}/{t}",
        "device_id": device_id,
        "stream": stream,
        "device_ts": at(t),
        "received_ts": at(t + 0.5),
        "time_flag": TimeFlag.OK,
        "payload": payload,
    }
    fields.update(kw)
    return Reading(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_config(REPO / "devices.yaml")


def test_readings_go_to_their_detector_and_everything_is_counted(site: SiteConfig) -> None:
    detectors = SensorDetectors(site)
    out: list[Observation] = []
    for i in range(20):
        z = 35.0 + (30.0 if i >= 5 else 0.0) + 0.1 * (i % 3)
        out += detectors.process(
            reading("geomag-fl-01", Stream.GEOMAG, 2.0 * i, GeomagField(33.0, -3.0, z))
        )
    out += detectors.process(reading("geomag-fl-03", Stream.GEOMAG, 1.0, GeomagState(True)))
    detectors.process(reading("gps-muck-07", Stream.GPS, 1.0, GpsFix(31.19525, 121.43774)))
    detectors.process(
        reading("gps-muck-07", Stream.GPS, 2.0, GpsFix(31.2, 121.4), time_flag=TimeFlag.FUTURE)
    )
    detectors.process(reading("ghost-1", Stream.GPS, 1.0, GpsFix(31.2, 121.4)))
    detectors.process(reading("cam-market-01", Stream.SNAPSHOT, 1.0, Snapshot(b"", 1, 1)))
    occupied = [(o.subject_id, o.state) for o in situations(out)]
    assert occupied == [("fire-lane-1", "occupied"), ("fire-lane-3", "occupied")]
    assert detectors.bay_state("geomag-fl-01") == "occupied"
    assert detectors.bay_state("geomag-fl-02") is None
    stats = detectors.stats
    assert stats["readings"] == 25 and stats["unknown_device"] == 1
    assert stats["not_for_sensors"] == 1 and stats["gps_rejected.future"] == 1
    assert stats["gps_accepted"] == 1
    assert stats["observations.occupancy"] == len(out)


def test_recalibrate_through_the_dispatcher(site: SiteConfig) -> None:
    detectors = SensorDetectors(site)
    for i in range(10):
        z = 35.0 + (30.0 if i >= 3 else 0.0) + 0.1 * (i % 3)
        detectors.process(
            reading("geomag-fl-01", Stream.GEOMAG, 2.0 * i, GeomagField(33.0, -3.0, z))
        )
    assert detectors.bay_state("geomag-fl-01") == "occupied"
    detectors.recalibrate("geomag-fl-01")
    assert [o.state for o in detectors.tick(at(21))] == ["occupied", "vacant"]
    with pytest.raises(KeyError, match="ghost"):
        detectors.recalibrate("ghost")
    with pytest.raises(ValueError, match="gps, not geomagnetic"):
        detectors.recalibrate("gps-muck-07")
    detectors.recalibrate("geomag-fl-03")  # decides on board: nothing to do, no error


def test_drone_positions_feed_its_geofences() -> None:
    config = SiteConfig.model_validate(
        {
            "site": {"id": "s"},
            "devices": [
                {
                    "id": "drone-1",
                    "kind": "drone",
                    "zones": [
                        {
                            "id": "site-a",
                            "kind": "geofence",
                            "polygon": [
                                [121.0, 31.0],
                                [121.01, 31.0],
                                [121.01, 31.01],
                                [121.0, 31.01],
                            ],
                        }
                    ],
                }
            ],
        }
    )
    detectors = SensorDetectors(config)
    out: list[Observation] = []
    for t in range(5):
        payload = DroneTelemetry(lat=31.005, lon=120.9995 + 0.0002 * t, alt_m=50.0)
        out += detectors.process(reading("drone-1", Stream.TELEMETRY, float(t), payload))
    assert next((o.kind, o.subject, o.state) for o in out) == (
        ObservationKind.GEOFENCE,
        "drone",
        "enter",
    )


# ---- the simulator's street ----------------------------------------------------------------

DURATION_S = 1500.0
SEED = 11


def feed(detectors: SensorDetectors, site: SiteConfig, messages: list) -> list[Observation]:
    """Messages decoded as ingestion does, through `detectors`, with a tick after each."""
    registry = DeviceRegistry(site)
    out: list[Observation] = []
    for message in messages:
        route = registry.route(message.topic)
        if route.stream is Stream.SNAPSHOT:
            continue
        ctx = route.context(message.topic, at(message.at_s + 0.4))
        for decoded in decode(ctx, message.payload):
            out += detectors.process(decoded)
        out += detectors.tick(at(message.at_s + 0.4))
    return out


@pytest.fixture(scope="module")
def simulated(site: SiteConfig) -> tuple[list[Observation], SensorDetectors]:
    """The demo site's generated messages, decoded as ingestion does, through SensorDetectors."""
    detectors = SensorDetectors(site)
    messages = build_scenario(site, duration_s=DURATION_S, seed=SEED, start=T0)
    return feed(detectors, site, messages), detectors


def situations(observations: list[Observation], **match: object) -> list[Observation]:
    """The first observation of each situation matching `match`, in order."""
    seen: dict[str, Observation] = {}
    for obs in observations:
        if all(getattr(obs, k) == v for k, v in match.items()) and obs.key not in seen:
            seen[obs.key] = obs
    return list(seen.values())


@pytest.mark.parametrize(
    ("device_id", "long_stay"), [("geomag-fl-01", True), ("geomag-fl-02", False)]
)
def test_simulated_fire_lane_bays_give_the_right_stays(
    simulated: tuple[list[Observation], SensorDetectors], device_id: str, long_stay: bool
) -> None:
    observations, _ = simulated
    visits = car_visits(random.Random(f"{SEED}/{device_id}/cars"), DURATION_S, long_stay)
    expected: list[tuple[str, float, float]] = []
    for v in visits:
        expected.append(("occupied", v.arrive_s, v.arrive_s + v.ramp_in_s + 2.01))
        if v.leave_s + v.ramp_out_s + 4 < DURATION_S:
            expected.append(("vacant", v.leave_s, v.leave_s + v.ramp_out_s + 2.01))
    got = situations(observations, kind=ObservationKind.OCCUPANCY, device_id=device_id)
    assert len(got) == len(expected) >= 2
    for obs, (state, earliest, latest) in zip(got, expected, strict=True):
        assert obs.state == state
        assert earliest <= (obs.first_seen - T0).total_seconds() <= latest
        assert obs.zone_kind == "fire_lane" and obs.subject == "car"


def test_simulated_on_board_bay_follows_its_decisions(
    simulated: tuple[list[Observation], SensorDetectors],
) -> None:
    observations, _ = simulated
    visits = car_visits(random.Random(f"{SEED}/geomag-fl-03/cars"), DURATION_S, False)
    got = situations(observations, kind=ObservationKind.OCCUPANCY, device_id="geomag-fl-03")
    starts = [(o.state, (o.first_seen - T0).total_seconds()) for o in got]
    assert starts[0][0] == "occupied"
    v = visits[0]
    assert v.arrive_s + v.ramp_in_s + 1 <= starts[0][1] <= v.arrive_s + v.ramp_in_s + 3.01
    assert [s for s, _ in starts] == ["occupied", "vacant"] * (len(starts) // 2) + (
        ["occupied"] if len(starts) % 2 else []
    )


def test_simulated_muck_truck_enters_the_school_zone_and_leaves_its_route(
    simulated: tuple[list[Observation], SensorDetectors],
) -> None:
    observations, detectors = simulated
    truck = [o for o in observations if o.device_id == "gps-muck-07"]
    enters = [o for o in truck if o.kind is ObservationKind.GEOFENCE and o.state == "enter"]
    assert enters and {(o.zone_id, o.zone_kind) for o in enters} == {("school-zone", "restricted")}
    off = situations(truck, kind=ObservationKind.OFF_ROUTE)
    assert len(off) >= 3
    states = Counter(o.state for o in truck if o.kind is ObservationKind.OFF_ROUTE)
    assert states["back"] >= len(off) - 1
    # every restricted-zone visit happens while the truck is off its route
    for enter in enters:
        assert any(o.first_seen <= enter.first_seen and o.state == "off" for o in off)
    assert not [o for o in truck if o.kind is ObservationKind.SPEEDING]
    assert not [o for o in observations if o.kind is ObservationKind.DEVICE_HEALTH]
    assert not [k for k in detectors.stats if k.startswith("gps_rejected")]


def test_bays_keep_baseline_and_state_across_a_restart(site: SiteConfig, tmp_path: Path) -> None:
    def field(t: float, parked: bool) -> Reading:
        z = 35.0 + (30.0 if parked else 0.0) + 0.1 * (int(t) % 3)
        return reading("geomag-fl-01", Stream.GEOMAG, t, GeomagField(33.0, -3.0, z))

    before = SensorDetectors(site)
    stay = [o for i in range(20) for o in before.process(field(2.0 * i, i >= 5))]
    before.process(reading("geomag-fl-03", Stream.GEOMAG, 1.0, GeomagState(True)))
    before.save(tmp_path / "sensors.json")

    after = SensorDetectors(site)
    assert after.load(tmp_path / "sensors.json")
    assert after.bay_state("geomag-fl-01") == "occupied"
    assert after.bay_state("geomag-fl-03") == "occupied"
    resumed = [o for i in range(20, 40) for o in after.process(field(2.0 * i, i < 30))]
    assert [o.state for o in situations(resumed)] == ["occupied", "vacant"]
    assert situations(resumed)[0].key == stay[0].key  # the same stay goes on

    fresh = SensorDetectors(site)  # without the state, the car is learnt as the empty bay
    naive = [o for i in range(20, 40) for o in fresh.process(field(2.0 * i, i < 30))]
    assert [o.state for o in situations(naive)] == ["occupied"]  # the empty bay looks occupied


def test_a_missing_or_broken_state_file_starts_fresh(site: SiteConfig, tmp_path: Path) -> None:
    detectors = SensorDetectors(site)
    assert not detectors.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"version": 1, "bays": {"geomag-fl-01": {"baseline_ut')
    assert not detectors.load(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text('{"version": 1, "bays": {"gps-muck-07": {}, "x": {}}}')
    assert detectors.load(tmp_path / "old.json")
    assert detectors.stats["restore_failed"] == 1 and detectors.stats["restore_skipped"] == 2


def test_vehicles_keep_their_open_situations_across_a_restart(
    site: SiteConfig, tmp_path: Path
) -> None:
    """A restart in the middle of an off-route episode carries on with the same episode (one
    case), where a box that forgot it would start a second one (a second case)."""
    messages = build_scenario(site, duration_s=DURATION_S, seed=SEED, start=T0)
    whole = feed(SensorDetectors(site), site, messages)
    off = situations(whole, kind=ObservationKind.OFF_ROUTE, device_id="gps-muck-07")
    episode = off[0]
    ends = [o for o in whole if o.key == episode.key and o.state == "back"]
    middle = (
        episode.first_seen + (ends[0].last_seen - episode.first_seen) / 2 - T0
    ).total_seconds()
    cut = next(i for i, m in enumerate(messages) if m.at_s > middle)

    before = SensorDetectors(site)
    first = feed(before, site, messages[:cut])
    before.save(tmp_path / "sensors.json")
    after = SensorDetectors(site)
    assert after.load(tmp_path / "sensors.json")
    resumed = first + feed(after, site, messages[cut:])
    keys = {o.key for o in situations(resumed, kind=ObservationKind.OFF_ROUTE)}
    assert keys == {o.key for o in situations(whole, kind=ObservationKind.OFF_ROUTE)}
    zones = {o.key for o in situations(resumed, kind=ObservationKind.GEOFENCE)}
    assert zones == {o.key for o in situations(whole, kind=ObservationKind.GEOFENCE)}

    forgetful = first + feed(SensorDetectors(site), site, messages[cut:])
    assert len({o.key for o in situations(forgetful, kind=ObservationKind.OFF_ROUTE)}) > len(keys)
