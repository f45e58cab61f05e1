"""The simulated scenario, judged by the real registry and decoders as the consumer uses them."""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pynmea2
import pytest
from PIL import Image
from shapely.geometry import Point, Polygon

from ingest.config import DeviceKind, SiteConfig, ZoneKind, load_config
from ingest.coords import distance_m
from ingest.decoders import DecodeError, Reason, decode
from ingest.readings import (
    DroneTelemetry,
    GeomagField,
    GeomagState,
    GpsFix,
    Reading,
    Snapshot,
    Stream,
    TimeFlag,
)
from ingest.registry import DeviceRegistry, UnknownTopic
from streetwatch.scenario import SimMessage, build_scenario, nmea_checksum, site_center
from streetwatch.scenario_drone import flight_of
from tests.conftest import REPO, site_dict

START = datetime(2025, 5, 1, 1, 59, 58, 250_000, tzinfo=UTC)
FAULTS = {
    "not_json",
    "out_of_range",
    "not_finite",
    "bad_checksum",
    "truncated_nmea",
    "unknown_device",
    "oversized",
}


def consume(config: SiteConfig, message: SimMessage) -> list[Reading]:
    """What the MQTT consumer does with one message: route, size limit, decode."""
    route = DeviceRegistry(config).route(message.topic)
    limits = config.ingest
    limit = (
        limits.max_snapshot_bytes if route.stream is Stream.SNAPSHOT else limits.max_payload_bytes
    )
    if len(message.payload) > limit:
        raise DecodeError(Reason.OVERSIZED, f"{len(message.payload)} bytes")
    received = START + timedelta(seconds=message.at_s + 1)
    ctx = route.context(message.topic, received, message.user_properties, limits)
    return decode(ctx, message.payload)


@pytest.fixture(scope="module")
def demo() -> SiteConfig:
    return load_config(REPO / "devices.yaml")


@pytest.fixture(scope="module")
def other_site(tmp_path_factory: pytest.TempPathFactory) -> SiteConfig:
    return SiteConfig.model_validate(
        site_dict(tmp_path_factory.mktemp("site"), "mqtt://127.0.0.1:1883")
    )


@pytest.fixture(scope="module")
def long_run(demo: SiteConfig) -> list[SimMessage]:
    return build_scenario(demo, duration_s=900, seed=7, start=START, faults=True)


def decoded(config: SiteConfig, messages: list[SimMessage]) -> dict[str, list[Reading]]:
    by_device: dict[str, list[Reading]] = defaultdict(list)
    for message in messages:
        if message.fault is None:
            for reading in consume(config, message):
                by_device[reading.device_id].append(reading)
    return by_device


def test_sorted_deterministic_and_seeded(demo: SiteConfig) -> None:
    first = build_scenario(demo, duration_s=60, seed=3, start=START, faults=True)
    again = build_scenario(demo, duration_s=60, seed=3, start=START, faults=True)
    other = build_scenario(demo, duration_s=60, seed=4, start=START, faults=True)
    assert first == again
    assert first != other
    assert [m.at_s for m in first] == sorted(m.at_s for m in first)
    assert first[0].at_s >= 0 and first[-1].at_s < 60


@pytest.mark.parametrize("site", ["demo", "other_site"])
def test_every_message_routes_and_decodes(site: str, request: pytest.FixtureRequest) -> None:
    config: SiteConfig = request.getfixturevalue(site)
    messages = build_scenario(config, duration_s=120, seed=1, start=START)
    assert all(m.fault is None for m in messages)
    seen = set()
    for message in messages:
        readings = consume(config, message)
        assert readings, message
        for reading in readings:
            assert reading.time_flag is TimeFlag.OK
            expected = START + timedelta(seconds=message.at_s)
            if reading.device_ts is not None:
                assert abs((reading.device_ts - expected).total_seconds()) < 0.011, message
            seen.add(reading.device_id)
    # a drone flying the flight written for its footage sends it in real time (scenario_drone)
    assert seen == {d.id for d in config.devices if flight_of(d) is None}


def test_positions_stay_near_the_site(demo: SiteConfig, long_run: list[SimMessage]) -> None:
    center = site_center(demo)
    readings = decoded(demo, long_run)
    positions = [
        (r.payload.lat, r.payload.lon)
        for rs in readings.values()
        for r in rs
        if isinstance(r.payload, GpsFix | DroneTelemetry)
    ]
    assert len(positions) > 3000
    assert max(distance_m(center, p) for p in positions) < 2000


def test_gcj02_device_reports_shifted_coordinates(demo: SiteConfig) -> None:
    device = next(d for d in demo.devices if d.crs.value == "gcj02")
    message = next(
        m
        for m in build_scenario(demo, duration_s=5, seed=1, start=START)
        if f"/{device.id}/" in m.topic
    )
    fix = consume(demo, message)[0].payload
    raw = json.loads(message.payload)
    assert 300 < distance_m((raw["lat"], raw["lon"]), (fix.lat, fix.lon)) < 700


def test_gps_motion_is_plausible(demo: SiteConfig, long_run: list[SimMessage]) -> None:
    readings = decoded(demo, long_run)
    # patrol cars and trucks (the sweeper's slow round: test_scenario_sweeper.py)
    for device in (d for d in demo.devices if d.kind is DeviceKind.GPS and d.sweeping is None):
        fixes = readings[device.id]
        assert len(fixes) == 900
        times = [r.device_ts for r in fixes]
        assert all((b - a).total_seconds() == 1 for a, b in itertools.pairwise(times))
        assert all(t.microsecond == 0 for t in times)
        agree = moving = 0
        for previous, current in itertools.pairwise(fixes):
            p, c = previous.payload, current.payload
            assert 15 <= c.speed_kmh <= 40.5
            assert 0.5 <= c.hdop <= 2.5 and 8 <= c.sats <= 28
            if distance_m((p.lat, p.lon), (c.lat, c.lon)) > 3:
                moving += 1
                bearing = _bearing(p.lat, p.lon, c.lat, c.lon)
                agree += abs((c.heading - bearing + 180) % 360 - 180) < 30
        assert moving > 800 and agree / moving > 0.9


def _bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    dx = (lon2 - lon1) * math.cos(math.radians(lat1))
    return math.degrees(math.atan2(dx, lat2 - lat1)) % 360


def test_nmea_is_rmc_and_gga_with_correct_checksums(demo: SiteConfig) -> None:
    device = next(d for d in demo.devices if d.format == "nmea")
    messages = [
        m
        for m in build_scenario(demo, duration_s=30, seed=1, start=START)
        if f"/{device.id}/" in m.topic
    ]
    assert len(messages) == 30
    for message in messages:
        text = message.payload.decode("ascii")
        assert text.endswith("\r\n")
        sentences = text.split("\r\n")[:-1]
        assert [s[:6] for s in sentences] == ["$GNRMC", "$GNGGA"]
        for sentence in sentences:
            body, checksum = sentence[1:].split("*")
            assert checksum == nmea_checksum(body) == f"{pynmea2.NMEASentence.checksum(body):02X}"
            pynmea2.parse(sentence, check=True)
        rmc = pynmea2.parse(sentences[0])
        assert rmc.status == "A" and rmc.datestamp.isoformat() == "2025-05-01"
        assert 15 / 1.852 <= float(rmc.spd_over_grnd) <= 40 / 1.852


def test_muck_truck_drives_into_its_restricted_zone_and_out(demo: SiteConfig) -> None:
    device = next(d for d in demo.devices if any(z.kind is ZoneKind.RESTRICTED for z in d.zones))
    zone = Polygon(next(z for z in device.zones if z.kind is ZoneKind.RESTRICTED).polygon)
    messages = build_scenario(demo, duration_s=120, seed=1, start=START)
    fixes = decoded(demo, messages)[device.id]
    inside = [zone.contains(Point(r.payload.lon, r.payload.lat)) for r in fixes]
    assert not inside[0]
    entered = inside.index(True)
    assert False in inside[entered:], "the truck never leaves the zone"


def test_json_times_carry_the_site_offset(demo: SiteConfig) -> None:
    messages = build_scenario(demo, duration_s=10, seed=1, start=START)
    stamps = [json.loads(m.payload)["ts"] for m in messages if m.payload.startswith(b"{")]
    stamps += [dict(m.user_properties)["ts"] for m in messages if m.user_properties]
    assert stamps and all(s.endswith("+08:00") for s in stamps)
    assert stamps[0].startswith("2025-05-01T09:59:58.")


def _occupied_spans(readings: list[Reading]) -> list[float]:
    """Lengths of the spans a bay looks occupied: raw field far from its start, or the decision."""
    spans, since = [], None
    baseline = None
    for reading in readings:
        payload = reading.payload
        if isinstance(payload, GeomagState):
            busy = payload.occupied
        else:
            assert isinstance(payload, GeomagField)
            vector = (payload.x, payload.y, payload.z)
            baseline = baseline or vector
            busy = math.dist(vector, baseline) > 8
        ts = reading.device_ts.timestamp()
        if busy and since is None:
            since = ts
        elif not busy and since is not None:
            spans.append(ts - since)
            since = None
    if since is not None:
        spans.append(readings[-1].device_ts.timestamp() - since)
    return spans


def test_geomagnetic_cars_come_and_go(demo: SiteConfig, long_run: list[SimMessage]) -> None:
    readings = decoded(demo, long_run)
    geomags = [d for d in demo.devices if d.kind is DeviceKind.GEOMAGNETIC]
    fire_lane_longest = max(
        max(_occupied_spans(readings[d.id]), default=0) for d in geomags if "fire" in d.bay
    )
    assert fire_lane_longest > 300
    for device in geomags:
        spans = _occupied_spans(readings[device.id])
        assert spans, f"no car ever parks over {device.id}"


def test_raw_geomagnetic_samples_look_like_earths_field(
    demo: SiteConfig, long_run: list[SimMessage]
) -> None:
    readings = decoded(demo, long_run)
    raw_sensors = [d for d in demo.devices if d.kind is DeviceKind.GEOMAGNETIC][:-1]
    for device in raw_sensors:
        samples = readings[device.id]
        assert len(samples) == 450
        assert all(isinstance(r.payload, GeomagField) for r in samples)
        first = samples[0].payload
        assert 40 < math.dist((first.x, first.y, first.z), (0, 0, 0)) < 55
        quiet = [r.payload.x for r in samples[:3]]
        assert max(quiet) - min(quiet) < 3
        peak = max(
            math.dist((r.payload.x, r.payload.y, r.payload.z), (first.x, first.y, first.z))
            for r in samples
        )
        assert 12 < peak < 65


def test_last_geomagnetic_sensor_decides_on_board(
    demo: SiteConfig, long_run: list[SimMessage]
) -> None:
    last = [d for d in demo.devices if d.kind is DeviceKind.GEOMAGNETIC][-1]
    states = decoded(demo, long_run)[last.id]
    assert all(isinstance(r.payload, GeomagState) for r in states)
    times = [r.device_ts.timestamp() for r in states]
    assert times[0] - START.timestamp() < 2.0
    assert max(b - a for a, b in itertools.pairwise(times)) <= 30.0
    assert {r.payload.occupied for r in states} == {True, False}


def test_drone_telemetry_and_snapshots(demo: SiteConfig, long_run: list[SimMessage]) -> None:
    readings = decoded(demo, long_run)
    drone = next(d for d in demo.devices if d.kind is DeviceKind.DRONE)
    telemetry = [r for r in readings[drone.id] if isinstance(r.payload, DroneTelemetry)]
    assert len(telemetry) == 1800
    assert max(r.payload.alt_m for r in telemetry) > 40
    flying_footage = {d.id for d in demo.devices if flight_of(d) is not None}
    for device in (d for d in demo.devices if Stream.SNAPSHOT in d.streams):
        if device.id in flying_footage:
            continue  # its video is the footage, not snapshots
        snaps = [r for r in readings[device.id] if isinstance(r.payload, Snapshot)]
        assert len(snaps) == 90
        assert all(r.device_ts is not None for r in snaps)
        with Image.open(io.BytesIO(snaps[0].payload.jpeg)) as image:
            assert image.format == "JPEG" and image.size == (640, 360)
            image.load()


def test_faults_each_fail_to_route_or_decode(demo: SiteConfig, long_run: list[SimMessage]) -> None:
    faults = [m for m in long_run if m.fault]
    assert {m.fault for m in faults} == FAULTS
    assert len({round(m.at_s // 60) for m in faults}) == len(faults), "faults are bunched up"
    for message in faults:
        try:
            consume(demo, message)
        except (DecodeError, UnknownTopic) as exc:
            assert exc.reason == message.fault, message
        else:
            pytest.fail(f"fault {message.fault} was accepted")


def test_oversized_fault_is_300_kib(demo: SiteConfig, long_run: list[SimMessage]) -> None:
    oversized = next(m for m in long_run if m.fault == "oversized")
    assert len(oversized.payload) == 300 * 1024


def test_other_sites_get_their_own_devices(other_site: SiteConfig) -> None:
    messages = build_scenario(other_site, duration_s=30, seed=1, start=START, faults=True)
    devices = {m.topic.split("/")[2] for m in messages if m.fault is None}
    assert devices == {d.id for d in other_site.devices}
    assert all(m.topic.startswith("streetwatch/test-site/") for m in messages)
