import json
import os
import random
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from rulekit import at, obs, rule, ruleset, scenario_recording, site, write_rules

from detectors.observation import ObservationKind
from ingest.config import DeviceKind, load_config
from ingest.readings import GeomagField, Reading, Snapshot, Stream, TimeFlag
from ingest.yamlsource import ConfigError
from rules.recording import RecordingError, RecordingWriter, read_recording
from rules.replay import Incident, load_labels, replay, score
from rules.schema import load_rules
from streetwatch.scenario import _long_parker, car_visits

REPO_DEVICES = "devices.yaml"
BIKE = rule(
    "bike", condition={"kind": "presence", "subject": "bicycle", "zone": "np-1", "dwell": "2m"}
)


def _bike_track(writer, sid, first, last, step=5):
    for t in range(first, last + 1, step):
        writer.observation(obs(sid=sid, first=first, last=t))


def test_recording_round_trip_with_readings_observations_and_a_truncated_line(tmp_path):
    path = tmp_path / "rec.jsonl"
    reading = Reading(
        "k1", "mag-1", Stream.GEOMAG, at(0), at(0.2), TimeFlag.OK, GeomagField(1.0, 2.0, 3.0)
    )
    snap = Reading(
        "k2",
        "cam-1",
        Stream.SNAPSHOT,
        None,
        at(1),
        TimeFlag.MISSING,
        Snapshot(b"\xff\xd8jpeg", 640, 360),
    )
    observation = obs(first=0, last=3)
    with RecordingWriter(path, site_id="t-site") as writer:
        writer.reading(reading)
        writer.reading(snap)
        writer.observation(observation)
    with path.open("ab") as handle:
        handle.write(b'{"type": "observation", "observ')  # killed mid-write
    with pytest.raises(RecordingError, match=r"rec.jsonl:5: not JSON"):
        list(read_recording(path))
    problems = []
    items = list(read_recording(path, problems))
    assert items[0] == reading
    assert items[1].payload == Snapshot(b"", 640, 360)  # images are not recorded
    assert items[2] == observation
    assert len(problems) == 1 and problems[0].startswith(f"{path}:5: not JSON")
    # a restarted run appends to the same recording without a second header
    with RecordingWriter(path) as writer:
        writer.observation(observation)
    assert path.read_text().count('"header"') == 1


def test_recording_refuses_unknown_line_types_and_naive_times(tmp_path):
    path = tmp_path / "rec.jsonl"
    data = obs().to_dict()
    data["first_seen"] = "2026-11-23T10:00:00"
    line = json.dumps({"type": "observation", "observation": data})
    path.write_text('{"type": "frame"}\n' + line + "\n")
    problems = []
    assert list(read_recording(path, problems)) == []
    assert '1: unknown line type "frame"' in problems[0]
    assert "2: observation times need a UTC offset" in problems[1]


def test_replay_constructed_recording_precision_and_recall(tmp_path):
    path = tmp_path / "rec.jsonl"
    with RecordingWriter(path, site_id="t-site") as writer:
        _bike_track(writer, "a", 0, 300)  # parked 5 min: true incident, found
        _bike_track(writer, "b", 400, 480)  # 80 s: a near miss, nothing opens
        _bike_track(writer, "c", 600, 800)  # found, but labelled as not an incident (false +)
        _bike_track(writer, "d", 1000, 1090)  # a true incident the 2 m dwell misses
    rules = ruleset(tmp_path, BIKE)
    result = replay(read_recording(path), rules, site())
    assert [(v.subject_id, v.opened_at) for v in result.violations] == [
        ("a", at(120)),
        ("c", at(720)),
    ]
    labels = tmp_path / "labels.yaml"
    labels.write_text(
        yaml.safe_dump(
            {
                "incidents": [
                    {
                        "rule": "bike",
                        "zone": "np-1",
                        "start": at(0).isoformat(),
                        "end": at(300).isoformat(),
                    },
                    {"rule": "bike", "start": at(1000).isoformat(), "end": at(1090).isoformat()},
                ]
            }
        )
    )
    scores = score(result.violations, load_labels(labels), tolerance_s=30)
    assert (scores.total.violations, scores.total.incidents, scores.total.matched) == (2, 2, 1)
    assert scores.total.precision == 0.5 and scores.total.recall == 0.5
    # a shorter dwell finds d, and precision/recall move as a tuning operator expects
    short = ruleset(tmp_path / "short", {**BIKE, "condition": {**BIKE["condition"], "dwell": "1m"}})
    again = replay(read_recording(path), short, site())
    scores = score(again.violations, load_labels(labels), tolerance_s=30)
    assert [v.subject_id for v in again.violations] == ["a", "b", "c", "d"]
    assert (scores.total.precision, scores.total.recall) == (0.5, 1.0)


def test_labels_csv_and_errors_with_lines(tmp_path):
    good = tmp_path / "l.csv"
    good.write_text(
        f"rule,zone,subject_id,start,end\nbike,np-1,,{at(0).isoformat()},{at(300).isoformat()}\n"
    )
    [incident] = load_labels(good)
    assert incident.zone == "np-1" and incident.subject_id is None
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "rule,zone,subject_id,start,end\n"
        f"bike,np-1,,{at(0).isoformat()},{at(300).isoformat()}\n"
        "bike,np-1,,2026-11-23T10:00:00,yesterday\n"
    )
    with pytest.raises(ConfigError) as info:
        load_labels(bad)
    assert info.value.problems[0].startswith(f"{bad}:3: start: ")
    assert "timezone" in info.value.problems[0]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("incidents:\n  - rule: bike\n    strat: 2026-11-23T10:00:00+08:00\n")
    with pytest.raises(ConfigError) as info:
        load_labels(bad_yaml)
    assert any(
        ":3: incidents[0].strat: unknown field 'strat'; did you mean 'start'?" in p
        for p in info.value.problems
    )


def test_one_incident_matches_one_violation():
    from rules.violation import Violation

    def v(t):
        return Violation(
            "bike",
            "b",
            "c",
            "minor",
            "s",
            "subject:x",
            at(t),
            at(0),
            at(t),
            ("cam-1",),
            "bicycle",
            "7",
            "np-1",
        )

    incidents = [Incident(rule="bike", start=at(0), end=at(600))]
    scores = score([v(100), v(200)], incidents)
    assert (scores.total.matched, scores.total.precision, scores.total.recall) == (1, 0.5, 1.0)


def test_late_observations_in_a_recording_are_counted(tmp_path):
    path = tmp_path / "rec.jsonl"
    with RecordingWriter(path) as writer:
        writer.observation(obs(sid="x", zone="walk-1", subject="person", first=0, last=500))
        writer.observation(obs(sid="a", first=0, last=300))
    result = replay(read_recording(path), ruleset(tmp_path, BIKE), site())
    assert result.violations == []
    assert result.stats["engine_late_dropped"] == 1


# ---- through the sensor detectors, on readings from streetwatch/scenario.py ----------------

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
"""08:00 Monday in Asia/Shanghai (inside the catalog's school-run window)."""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    config = load_config(REPO_DEVICES)
    path = tmp_path_factory.mktemp("rec") / "scenario.jsonl"
    scenario_recording(path, config, 1800, START)
    return config, path


def _true_visits(config, duration_s, min_stay_s):
    geomags = [d for d in config.devices if d.kind is DeviceKind.GEOMAGNETIC]
    long_parker = _long_parker(geomags)
    out = []
    for device in geomags:
        rng = random.Random(f"1/{device.id}/cars")
        for visit in car_visits(rng, duration_s, device is long_parker):
            if visit.leave_s - visit.arrive_s >= min_stay_s and visit.arrive_s < duration_s - 60:
                out.append((device.bay, visit))
    return out


def test_replay_readings_through_sensor_detectors_scores_fire_lane_visits(tmp_path, scenario):
    config, path = scenario
    rules = load_rules(
        write_rules(
            tmp_path / "r",
            rule("fire", condition={"kind": "occupancy", "zone_kind": "fire_lane", "dwell": "30s"}),
        ),
        config,
    )
    result = replay(read_recording(path), rules, config)
    assert result.stats["observations_from_readings"] > 0
    incidents = [
        Incident(
            rule="fire",
            zone=bay,
            start=START + timedelta(seconds=v.arrive_s),
            end=START + timedelta(seconds=v.leave_s),
        )
        for bay, v in _true_visits(config, 1800, 30)
    ]
    assert len(incidents) >= 10
    scores = score(result.violations, incidents, tolerance_s=30)
    assert scores.total.precision == 1.0
    assert scores.total.recall == 1.0


def test_replay_longer_dwell_skips_short_visits(tmp_path, scenario):
    config, path = scenario
    rules = load_rules(
        write_rules(
            tmp_path / "r",
            rule("fire", condition={"kind": "occupancy", "zone_kind": "fire_lane", "dwell": "4m"}),
        ),
        config,
    )
    result = replay(read_recording(path), rules, config)
    long_visits = _true_visits(config, 1800, 4 * 60 - 10)
    short = [(bay, v) for bay, v in _true_visits(config, 1800, 0) if v.leave_s - v.arrive_s < 200]
    assert short, "the scenario should have short visits for this test to mean anything"
    for violation in result.violations:
        opened = (violation.opened_at - START).total_seconds()
        assert any(
            bay == violation.zone_id and v.arrive_s + 240 <= opened <= v.leave_s + 15
            for bay, v in long_visits
        ), f"violation at {opened} s in {violation.zone_id} matches no long visit"
    assert len(result.violations) >= 3


def test_catalog_on_scenario_opens_fire_lane_and_muck_truck_cases(scenario):
    config, path = scenario
    rules = load_rules("rules/catalog", config)
    result = replay(read_recording(path), rules, config)
    by_rule = {}
    for v in result.violations:
        by_rule.setdefault(v.rule_id, []).append(v)
    assert set(by_rule) == {
        "fire-lane-occupied",
        "muck-truck-off-route",
        "muck-truck-restricted-zone",
        "sanitation-segment-uncovered",
    }
    # the simulated sweeper starts on Xietu Rd at its 08:00 deadline and never sweeps Tianping Rd
    assert {v.zone_id for v in by_rule["sanitation-segment-uncovered"]} == {"xietu-n", "tianping-e"}
    assert {v.zone_id for v in by_rule["fire-lane-occupied"]} == {
        "fire-lane-1",
        "fire-lane-2",
        "fire-lane-3",
    }
    restricted = by_rule["muck-truck-restricted-zone"][0]
    assert restricted.zone_id == "school-zone" and restricted.devices == ("gps-muck-07",)
    off = by_rule["muck-truck-off-route"][0]
    assert off.observations[-1].kind is ObservationKind.OFF_ROUTE
    assert off.dispose_within == timedelta(days=1, hours=12)


def test_recorded_sensor_observations_are_not_counted_twice(tmp_path, scenario):
    config, path = scenario
    from detectors.sensors import SensorDetectors

    detectors = SensorDetectors(config)
    mixed = tmp_path / "mixed.jsonl"
    with RecordingWriter(mixed) as writer:
        for item in read_recording(path):
            writer.reading(item)
            for o in detectors.process(item):
                writer.observation(o)
    rules = load_rules(
        write_rules(
            tmp_path / "r",
            rule("fire", condition={"kind": "occupancy", "zone_kind": "fire_lane", "dwell": "30s"}),
        ),
        config,
    )
    from_readings = replay(read_recording(mixed), rules, config, sensors="readings")
    recorded = replay(read_recording(mixed), rules, config, sensors="recorded")
    alone = replay(read_recording(path), rules, config)
    assert from_readings.stats["observations_regenerated"] > 0
    assert [v.violation_id for v in from_readings.violations] == [
        v.violation_id for v in alone.violations
    ]
    assert [v.zone_id for v in recorded.violations] == [v.zone_id for v in alone.violations]


@pytest.mark.timeout(30)
def test_labels_csv_that_is_a_fifo_is_refused_not_opened(tmp_path):
    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as refused:
        load_labels(fifo)
    assert refused.value.problems == [
        f"{fifo}: cannot read: it is a FIFO (named pipe), not a regular file"
    ]
