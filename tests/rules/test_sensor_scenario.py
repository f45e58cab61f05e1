"""The simulated site's sensors (streetwatch/scenario_sensors.py), decoded as ingestion would and
replayed through the demo's sensor rules: the stories the scenario tells become the cases the
demo shows, each once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rulekit import scenario_recording

from ingest.config import load_config
from rules.recording import read_recording
from rules.replay import replay
from rules.schema import load_rules

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 Monday in Asia/Shanghai
DEMO_SENSOR_RULES = ("bin-full", "toilet-nh3", "construction-pm10", "sensor-silent")


def test_the_demo_scenario_opens_each_sensor_case_once(tmp_path) -> None:
    config = load_config("devices.yaml")
    path = scenario_recording(tmp_path / "scenario.jsonl", config, 1200, START)
    rules = load_rules("streetwatch/demo_rules", config)
    wanted = type(rules)(tuple(r for r in rules.rules if r.id in DEMO_SENSOR_RULES))
    result = replay(read_recording(path), wanted, config)
    opened = sorted((v.rule_id, v.devices[0]) for v in result.violations)
    assert opened == [
        ("bin-full", "bin-demo-01"),  # hovers at 86-96 % for 11 minutes: one case
        ("construction-pm10", "site-demo-01"),
        ("sensor-silent", "bin-demo-02"),  # stops reporting at 6 minutes
        ("toilet-nh3", "toilet-demo-01"),
    ]
    bin_case = next(v for v in result.violations if v.rule_id == "bin-full")
    assert START + timedelta(minutes=6) < bin_case.opened_at < START + timedelta(minutes=8)
    silent = next(v for v in result.violations if v.rule_id == "sensor-silent")
    assert silent.opened_at < START + timedelta(minutes=10)
