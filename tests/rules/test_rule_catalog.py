"""Each catalog rule on realistic observation sequences (detectors report about once a second
while a situation lasts), and on the near misses it must ignore."""

from datetime import UTC, datetime, timedelta

import pytest

from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import load_config
from rules.engine import Engine
from rules.schema import load_rules

MONDAY_10 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 Asia/Shanghai


@pytest.fixture(scope="module")
def site():
    config = load_config("devices.yaml")
    return config, load_rules("rules/catalog", config)


def _engine(site):
    config, rules = site
    return Engine(rules, config)


def _presence(subject, zone, sid, start_s, stay_s, base=MONDAY_10, kind_of=None):
    """A camera track in a zone, reported every second while it stays."""
    kinds = {
        "shopfront-wang": "shopfront",
        "sidewalk-east": "sidewalk",
        "no-parking-centre": "no_parking",
    }
    first = base + timedelta(seconds=start_s)
    return [
        Observation(
            ObservationKind.PRESENCE,
            "cam-market-01",
            subject,
            sid,
            first,
            first + timedelta(seconds=t),
            zone_id=zone,
            zone_kind=kinds[zone],
            location=GeoPoint(121.4373, 31.1952),
        )
        for t in range(0, int(stay_s) + 1)
    ]


def _run(engine, observations, until_s=None, base=MONDAY_10):
    out = []
    for o in sorted(observations, key=lambda o: o.last_seen):
        out += engine.process(o)
    if until_s is not None:
        for t in range(0, int(until_s), 5):
            out += engine.advance(base + timedelta(seconds=t))
    return out


def test_stray_bicycle_in_no_parking_zone(site):
    engine = _engine(site)
    out = _run(engine, _presence("bicycle", "no-parking-centre", "17", 0, 400))
    [v] = out
    assert v.rule_id == "stray-non-motor" and v.category == "市容管理/非机动车乱停放"
    assert v.opened_at == MONDAY_10 + timedelta(minutes=5)
    assert v.deadline == v.opened_at + timedelta(minutes=15)
    assert v.zone_kind == "no_parking" and v.subject == "bicycle" and v.party is None


def test_stray_motorcycle_on_sidewalk_and_near_misses(site):
    engine = _engine(site)
    observations = (
        _presence("motorcycle", "sidewalk-east", "3", 0, 330)
        + _presence("bicycle", "no-parking-centre", "4", 0, 240)  # leaves after 4 minutes
        + _presence("person", "no-parking-centre", "5", 0, 600)  # not a vehicle
        + _presence("bicycle", "shopfront-wang", "6", 0, 600)  # shop front: another rule's job
    )
    out = _run(engine, observations, until_s=900)
    assert [(v.rule_id, v.subject_id) for v in out] == [("stray-non-motor", "3")]


def test_stray_bicycle_occluded_for_a_while_keeps_its_dwell_and_is_one_case(site):
    engine = _engine(site)
    track = _presence("bicycle", "no-parking-centre", "8", 0, 900)
    # hidden for 20 s by a passing van before the dwell is reached, and again later
    track = [o for o in track if not (100 <= o.dwell_s <= 120 or 500 <= o.dwell_s <= 520)]
    out = _run(engine, track, until_s=1000)
    assert [v.opened_at for v in out] == [MONDAY_10 + timedelta(minutes=5)]


def test_cross_door_trading_names_the_merchant(site):
    engine = _engine(site)
    observations = _presence("goods", "shopfront-wang", "21", 0, 300) + _presence(
        "goods", "shopfront-wang", "22", 30, 270
    )
    out = _run(engine, observations)
    [v] = out  # two crates, one shop front: one case
    assert v.rule_id == "cross-door-trading"
    assert v.party == "m-0001"
    assert v.opened_at == MONDAY_10 + timedelta(minutes=3)


def test_cross_door_trading_near_misses(site):
    engine = _engine(site)
    night = MONDAY_10 + timedelta(hours=13)  # 23:00 local, outside business hours
    observations = _presence("goods", "shopfront-wang", "31", 0, 150) + _presence(
        "goods", "shopfront-wang", "32", 0, 600, base=night
    )
    assert _run(engine, observations, until_s=800) == []


def test_street_vending_stall(site):
    engine = _engine(site)
    out = _run(engine, _presence("stall", "sidewalk-east", "41", 0, 360))
    assert [v.rule_id for v in out] == ["street-vending-stall"]


def test_street_vending_goods_with_a_vendor(site):
    engine = _engine(site)
    observations = _presence("goods", "sidewalk-east", "51", 0, 400) + _presence(
        "person", "sidewalk-east", "52", 60, 340
    )
    out = _run(engine, observations)
    [v] = out
    assert v.rule_id == "street-vending-goods"
    assert v.opened_at == MONDAY_10 + timedelta(minutes=5)
    assert {o.subject for o in v.observations} == {"goods", "person"}


def test_street_vending_goods_with_passers_by_only(site):
    engine = _engine(site)
    observations = _presence("goods", "sidewalk-east", "61", 0, 600)
    for k in range(10):  # people walking past, 15 s each
        observations += _presence("person", "sidewalk-east", f"p{k}", 30 + 55 * k, 15)
    # goods left on the shop front and a person lingering on the sidewalk: different zones
    observations += _presence(
        "person", "sidewalk-east", "62", 0, 600, base=MONDAY_10 + timedelta(hours=1)
    )
    observations += _presence(
        "goods", "shopfront-wang", "63", 0, 100, base=MONDAY_10 + timedelta(hours=1)
    )
    assert [v.rule_id for v in _run(engine, observations)] == []


def _occupancy(bay, device, state, first_s, last_s):
    return Observation(
        ObservationKind.OCCUPANCY,
        device,
        "car",
        bay,
        MONDAY_10 + timedelta(seconds=first_s),
        MONDAY_10 + timedelta(seconds=last_s),
        zone_id=bay,
        zone_kind="fire_lane",
        state=state,
    )


def test_fire_lane_car_opens_after_30s_without_further_reports(site):
    engine = _engine(site)
    out = _run(engine, [_occupancy("fire-lane-1", "geomag-fl-01", "occupied", 0, 0)], until_s=120)
    [v] = out
    assert v.rule_id == "fire-lane-occupied" and v.severity == "major"
    assert v.opened_at == MONDAY_10 + timedelta(seconds=30)
    assert v.location == GeoPoint(121.43700, 31.19540)
    assert v.deadline == v.opened_at + timedelta(minutes=10)


def test_fire_lane_pull_through_is_not_a_case(site):
    engine = _engine(site)
    observations = [
        _occupancy("fire-lane-2", "geomag-fl-02", "occupied", 0, 0),
        _occupancy("fire-lane-2", "geomag-fl-02", "vacant", 20, 20),
    ]
    assert _run(engine, observations, until_s=300) == []


def _truck(kind, state, first_s, last_s, zone=None, device="gps-muck-07", base=MONDAY_10):
    return Observation(
        ObservationKind(kind),
        device,
        "vehicle",
        device,
        base + timedelta(seconds=first_s),
        base + timedelta(seconds=last_s),
        zone_id=zone,
        zone_kind="restricted" if zone else None,
        state=state,
    )


def test_muck_truck_off_route(site):
    engine = _engine(site)
    observations = [_truck("off_route", "off", 0, t) for t in range(0, 60, 10)]
    out = _run(engine, observations, until_s=200)
    [v] = out
    assert v.rule_id == "muck-truck-off-route"
    assert v.opened_at == MONDAY_10 + timedelta(seconds=30)


def test_muck_truck_brief_detour_is_not_a_case(site):
    engine = _engine(site)
    observations = [_truck("off_route", "off", 0, 0), _truck("off_route", "back", 0, 20)]
    assert _run(engine, observations, until_s=200) == []


def test_muck_truck_in_school_zone_during_school_run_only(site):
    engine = _engine(site)
    school_run = MONDAY_10 - timedelta(hours=2)  # 08:00 local
    saturday = school_run + timedelta(days=5)
    out = _run(engine, [_truck("geofence", "enter", 0, 0, "school-zone", base=school_run)])
    assert [(v.rule_id, v.zone_id) for v in out] == [("muck-truck-restricted-zone", "school-zone")]
    engine = _engine(site)
    quiet = [
        _truck("geofence", "enter", 0, 0, "school-zone"),  # 10:00: no school run
        _truck("geofence", "exit", 0, 60, "school-zone"),
        _truck("geofence", "enter", 0, 0, "school-zone", base=saturday),
        _truck("geofence", "exit", 0, 60, "school-zone", base=saturday),
    ]
    assert _run(engine, quiet) == []


def test_every_catalog_file_documents_what_it_needs():
    from pathlib import Path

    for path in sorted(Path("rules/catalog").glob("*.yaml")):
        text = path.read_text()
        assert text.startswith("#"), path
        assert "Needs in devices.yaml" in text, path


def _metric(device, metric, values, start_s=0, every_s=60, base=MONDAY_10):
    """A sensor's samples of one metric, one every `every_s` seconds."""
    from detectors.metrics import metric_observation
    from ingest.readings import Metric

    config = load_config("devices.yaml")
    sensor = config.device(device)
    unit = sensor.metrics[metric].unit
    return [
        metric_observation(
            sensor, base + timedelta(seconds=start_s + i * every_s), Metric(metric, v, unit)
        )
        for i, v in enumerate(values)
    ]


def test_bin_full_for_30_minutes_dispatches_collection_once(site):
    engine = _engine(site)
    hovering = [50] * 10 + [91, 94, 88, 92, 85, 96] * 7  # 42 minutes at 85-96 %
    out = _run(engine, _metric("bin-demo-01", "fill_pct", [*hovering, 15]))
    [v] = out
    assert v.rule_id == "bin-full" and v.category == "环境卫生/垃圾桶满溢"
    assert v.opened_at == MONDAY_10 + timedelta(minutes=40)
    assert v.deadline == v.opened_at + timedelta(hours=2)
    assert v.subject == "bin" and v.devices == ("bin-demo-01",)
    [cleared] = engine.clearances()
    assert cleared.cleared_at == MONDAY_10 + timedelta(minutes=52)
    engine = _engine(site)
    assert _run(engine, _metric("bin-demo-02", "fill_pct", [95] * 25 + [70])) == []


def test_toilet_ammonia_over_its_limit(site):
    engine = _engine(site)
    [v] = _run(engine, _metric("toilet-demo-01", "nh3_ppm", [0.4] * 5 + [2.2] * 15))
    assert v.rule_id == "toilet-nh3" and v.subject == "toilet"
    engine = _engine(site)
    assert _run(engine, _metric("toilet-demo-01", "nh3_ppm", [1.2] * 60)) == []


def test_construction_dust_for_an_hour_and_night_noise(site):
    engine = _engine(site)
    dusty = _metric("site-demo-01", "pm10_ugm3", [80] * 10 + [190, 160, 140, 175] * 16)
    [v] = _run(engine, dusty)
    assert v.rule_id == "construction-pm10"
    assert v.opened_at == MONDAY_10 + timedelta(minutes=70)
    engine = _engine(site)
    assert _run(engine, _metric("site-demo-01", "noise_dba", [75] * 120)) == []  # by day
    evening = MONDAY_10 + timedelta(hours=11, minutes=30)  # 21:30 local
    engine = _engine(site)
    [v] = _run(engine, _metric("site-demo-01", "noise_dba", [68] * 60, base=evening))
    assert v.rule_id == "construction-noise-night"
    assert v.opened_at == MONDAY_10 + timedelta(hours=12)  # 22:00 local


def test_water_level_over_its_mark_and_rising_fast(site):
    engine = _engine(site)
    rising = [2.0 + 0.03 * i for i in range(50)]  # 3 cm a minute, over 3.0 m after 34 minutes
    out = _run(engine, _metric("gauge-demo-01", "water_level_m", rising))
    assert sorted(v.rule_id for v in out) == ["water-level-rising", "water-level-warning"]
    engine = _engine(site)
    assert _run(engine, _metric("gauge-demo-01", "water_level_m", [2.5] * 60)) == []


def test_a_silent_sensor_is_a_case(site):
    engine = _engine(site)
    chatty = [
        o
        for device, metric in (
            ("bin-demo-01", "fill_pct"),
            ("toilet-demo-01", "nh3_ppm"),
            ("site-demo-01", "pm10_ugm3"),
            ("gauge-demo-01", "water_level_m"),
        )
        for o in _metric(device, metric, [1.0] * 45)
    ]
    out = _run(engine, chatty + _metric("bin-demo-02", "fill_pct", [10] * 5), until_s=45 * 60)
    assert [(v.rule_id, v.devices) for v in out] == [("sensor-silent", ("bin-demo-02",))]
    assert out[0].opened_at == MONDAY_10 + timedelta(minutes=34)
