"""Threshold clauses over sensor metrics: dwell from the crossing, hysteresis (one episode, one
case), clearance below the clear level, rate of change, silence, and a night-only schedule, all
in event time (no waiting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rulekit import at, rule, write_rules

from detectors.metrics import metric_observation
from detectors.observation import Observation
from ingest.config import ConfigError, SiteConfig
from ingest.readings import Metric
from rules.engine import Engine
from rules.schema import load_rules
from rules.violation import Violation


def sensor_site() -> SiteConfig:
    def sensor(device_id: str, facility: str, **metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": device_id,
            "kind": "sensor",
            "facility": facility,
            "location": {"lat": 31.2, "lon": 121.4},
            "metrics": metrics,
        }

    return SiteConfig.model_validate(
        {
            "site": {"id": "t-site", "timezone": "Asia/Shanghai"},
            "devices": [
                sensor("bin-1", "bin", fill_pct={"unit": "%", "min": 0, "max": 100}),
                sensor("bin-2", "bin", fill_pct={"unit": "%", "min": 0, "max": 100}),
                sensor(
                    "site-1",
                    "construction_site",
                    noise_dba={"unit": "dB(A)"},
                    pm10_ugm3={"unit": "µg/m³"},
                ),
                sensor("river-1", "water_gauge", water_level_m={"unit": "m"}),
            ],
        }
    )


SITE = sensor_site()

BIN_FULL = rule(
    "bin-full",
    condition={
        "kind": "metric",
        "subject": "bin",
        "threshold": {"metric": "fill_pct", "above": 90, "clear": 80},
        "dwell": "30m",
    },
)


def engine(tmp_path: Path, *rules: dict[str, Any], external_clock: bool = False) -> Engine:
    loaded = load_rules(write_rules(tmp_path / "rules", *rules), SITE)
    return Engine(loaded, SITE, external_clock=external_clock)


def sample(device: str, metric: str, value: float, t: float) -> Observation:
    spec = SITE.device(device).metrics[metric]  # type: ignore[union-attr,index]
    return metric_observation(SITE.device(device), at(t), Metric(metric, value, spec.unit))  # type: ignore[arg-type]


def feed(
    eng: Engine, device: str, metric: str, series: list[tuple[float, float]]
) -> list[Violation]:
    out: list[Violation] = []
    for t, value in series:
        out += eng.process(sample(device, metric, value, t))
    return out


def minutes(values: list[float], start_min: float = 0) -> list[tuple[float, float]]:
    """One sample a minute."""
    return [((start_min + i) * 60.0, v) for i, v in enumerate(values)]


def test_a_bin_over_its_threshold_long_enough_opens_one_case(tmp_path: Path) -> None:
    eng = engine(tmp_path, BIN_FULL)
    opened = feed(eng, "bin-1", "fill_pct", minutes([50] * 5 + [93] * 40))
    assert len(opened) == 1  # one case, not one per reading
    [v] = opened
    assert v.rule_id == "bin-full" and v.devices == ("bin-1",)
    assert v.opened_at == at(5 * 60 + 30 * 60)  # the crossing plus the dwell
    assert v.observations[0].first_seen == at(5 * 60)
    assert v.observations[-1].attributes["value"] == 93
    assert v.observations[-1].attributes["threshold"]["signature"] == "fill_pct>90~80"
    assert v.location is not None
    assert eng.clearances() == []


def test_short_of_the_dwell_nothing_opens(tmp_path: Path) -> None:
    eng = engine(tmp_path, BIN_FULL)
    # over for 20 minutes, back to 70 (below the clear level), over again for 20 minutes
    assert feed(eng, "bin-1", "fill_pct", minutes([95] * 20 + [70] + [95] * 20)) == []


def test_a_bounce_inside_the_hysteresis_band_stays_one_episode(tmp_path: Path) -> None:
    eng = engine(tmp_path, BIN_FULL)
    bouncing = [95, 85, 92, 88, 91, 82] * 12  # 72 minutes between 82 and 95
    opened = feed(eng, "bin-1", "fill_pct", minutes([*bouncing, 60, 50]))
    assert [v.opened_at for v in opened] == [at(30 * 60)]
    [cleared] = eng.clearances()
    assert cleared.how == "ended" and cleared.cleared_at == at(72 * 60)
    assert cleared.observation is not None and cleared.observation.state == "ok"


def test_without_a_clear_level_the_same_bounce_never_lasts_the_dwell(tmp_path: Path) -> None:
    strict = rule(
        "bin-strict",
        condition={
            "kind": "metric",
            "threshold": {"metric": "fill_pct", "above": 90},
            "dwell": "30m",
        },
    )
    eng = engine(tmp_path, strict)
    assert feed(eng, "bin-1", "fill_pct", minutes([95, 85, 92, 88, 91, 82] * 12)) == []


def test_each_bin_and_each_rule_has_its_own_episodes(tmp_path: Path) -> None:
    urgent = rule(
        "bin-urgent",
        condition={
            "kind": "metric",
            "threshold": {"metric": "fill_pct", "above": 98},
            "dwell": "10m",
        },
    )
    eng = engine(tmp_path, BIN_FULL, urgent)
    out = feed(eng, "bin-1", "fill_pct", minutes([93] * 40))
    out += feed(eng, "bin-2", "fill_pct", minutes([99] * 40))
    assert sorted((v.rule_id, v.devices[0]) for v in out) == [
        ("bin-full", "bin-1"),
        ("bin-full", "bin-2"),
        ("bin-urgent", "bin-2"),
    ]


def test_the_episode_clears_and_a_later_one_is_a_new_case(tmp_path: Path) -> None:
    eng = engine(tmp_path, BIN_FULL)
    first = feed(eng, "bin-1", "fill_pct", minutes([95] * 35 + [10] * 5 + [96] * 35))
    assert len(first) == 2 and first[0].violation_id != first[1].violation_id
    assert [c.cleared_at for c in eng.clearances()] == [at(35 * 60)]


def test_a_rise_per_time_is_a_rate_threshold(tmp_path: Path) -> None:
    flood = rule(
        "river-rising",
        condition={
            "kind": "metric",
            "subject": "water_gauge",
            "threshold": {"metric": "water_level_m", "rate_per": "10m", "above": 0.3, "clear": 0.1},
        },
    )
    eng = engine(tmp_path, flood)
    steady = [1.0 + 0.001 * i for i in range(20)]  # 1 cm per 10 minutes
    assert feed(eng, "river-1", "water_level_m", minutes(steady)) == []
    rising = [steady[-1] + 0.05 * (i + 1) for i in range(15)]  # 50 cm per 10 minutes
    [v] = feed(eng, "river-1", "water_level_m", minutes(rising, start_min=20))
    assert v.observations[-1].attributes["rate"] == pytest.approx(0.3, abs=0.25)
    assert v.observations[-1].attributes["rate"] > 0.3


def test_a_silent_sensor_opens_a_case_and_its_next_sample_clears_it(tmp_path: Path) -> None:
    silent = rule("sensor-silent", condition={"kind": "metric", "threshold": {"silent_for": "30m"}})
    eng = engine(tmp_path, silent, external_clock=True)
    eng.advance(at(0))
    for device, metric in (("bin-2", "fill_pct"), ("site-1", "pm10_ugm3")):
        feed(eng, device, metric, [(0.0, 40.0)])
    feed(eng, "river-1", "water_level_m", [(0.0, 1.0)])
    assert feed(eng, "bin-1", "fill_pct", minutes([40] * 10)) == []  # last heard at 9 min
    feed(eng, "bin-2", "fill_pct", minutes([40] * 45))
    feed(eng, "site-1", "pm10_ugm3", minutes([40] * 45))
    feed(eng, "river-1", "water_level_m", minutes([1.0] * 45))
    assert eng.advance(at(38 * 60)) == []
    [v] = eng.advance(at(45 * 60))
    assert v.devices == ("bin-1",) and v.rule_id == "sensor-silent"
    assert v.opened_at == at(9 * 60 + 30 * 60)
    assert v.observations[0].attributes["last_heard"] == at(9 * 60).isoformat()
    assert eng.advance(at(50 * 60)) == []  # still silent: the same case
    feed(eng, "bin-1", "fill_pct", [(51 * 60.0, 41.0)])
    [cleared] = eng.clearances()
    assert cleared.violation_id == v.violation_id and cleared.cleared_at == at(51 * 60)


def test_a_sensor_never_heard_counts_from_the_start(tmp_path: Path) -> None:
    silent = rule(
        "bin-silent",
        condition={"kind": "metric", "subject": "bin", "threshold": {"silent_for": "15m"}},
    )
    eng = engine(tmp_path, silent, external_clock=True)
    assert eng.advance(at(0)) == []
    feed(eng, "bin-2", "fill_pct", minutes([10] * 20))
    opened = eng.advance(at(20 * 60))
    assert [(v.devices[0], v.opened_at) for v in opened] == [("bin-1", at(15 * 60))]


NIGHT_NOISE = rule(
    "noise-night",
    condition={
        "kind": "metric",
        "subject": "construction_site",
        "threshold": {"metric": "noise_dba", "above": 55, "clear": 52},
        "dwell": "5m",
    },
    schedule={"windows": ["22:00-06:00"]},
)
# rulekit's T0 is 10:00 in Asia/Shanghai: 22:00 is 12 h later


def test_noise_over_the_night_limit_opens_at_22_00(tmp_path: Path) -> None:
    eng = engine(tmp_path, NIGHT_NOISE)
    evening = [(11 * 3600 + m * 60.0, 70.0) for m in range(120)]  # 21:00-23:00, loud throughout
    [v] = feed(eng, "site-1", "noise_dba", evening)
    assert v.opened_at == at(12 * 3600)


def test_the_same_noise_by_day_opens_nothing(tmp_path: Path) -> None:
    eng = engine(tmp_path, NIGHT_NOISE)
    day = [(m * 60.0, 70.0) for m in range(8 * 60)]  # 10:00-18:00
    assert feed(eng, "site-1", "noise_dba", [*day, (8 * 3600.0, 40.0)]) == []


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        ({"kind": "metric", "dwell": "1m"}, "names a `threshold:`"),
        ({"kind": "presence", "threshold": {"metric": "x", "above": 1}}, "names a `threshold:`"),
        ({"kind": "metric", "threshold": {"metric": "fill_pct"}}, "one of `above` or `below`"),
        (
            {"kind": "metric", "threshold": {"metric": "fill_pct", "above": 90, "clear": 95}},
            "clear 95 must be at or below above 90",
        ),
        (
            {"kind": "metric", "threshold": {"silent_for": "1h", "above": 3}},
            "silent_for stands alone",
        ),
    ],
)
def test_bad_thresholds_name_the_problem(
    tmp_path: Path, condition: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        engine(tmp_path, rule("bad", condition=condition))
    text = "\n".join(caught.value.problems)
    assert words in text and "rules.yaml:" in text, text


def test_a_replay_counts_only_the_sensors_its_recording_holds(tmp_path: Path) -> None:
    silent = rule("sensor-silent", condition={"kind": "metric", "threshold": {"silent_for": "5m"}})
    eng = engine(tmp_path, silent, external_clock=True)
    eng.thresholds.count_unheard = False
    eng.advance(at(0))
    feed(eng, "bin-1", "fill_pct", minutes([10] * 3))
    opened = eng.advance(at(20 * 60))
    assert [v.devices for v in opened] == [("bin-1",)]  # heard, then silent; the rest unheard


def _restarted(tmp_path: Path, before: Engine, *rules: dict[str, Any], **kw: Any) -> Engine:
    """A new engine (as after a restart) that took back `before`'s saved threshold state, the
    state through JSON as the box saves it."""
    import json

    after = engine(tmp_path / "after", *rules, **kw)
    after.thresholds.restore(json.loads(json.dumps(before.thresholds.snapshot())))
    return after


def test_an_episode_open_across_a_restart_is_the_same_case_and_still_clears(
    tmp_path: Path,
) -> None:
    """Full for 2 h with a restart after 40 min: no second case once the 1 h cooldown is over
    (the episode kept its crossing time), and emptying the bin clears the case opened before."""
    bin_full = {**BIN_FULL, "cooldown": "1h"}
    before = engine(tmp_path / "before", bin_full)
    [v] = feed(before, "bin-1", "fill_pct", minutes([50] * 5 + [93] * 35))
    after = _restarted(tmp_path, before, bin_full)
    assert after.remember_opened(v.rule_id, v.situation, v.opened_at)  # from the case store
    assert feed(after, "bin-1", "fill_pct", minutes([94] * 80, start_min=40)) == []
    assert feed(after, "bin-1", "fill_pct", [(120 * 60.0, 20.0)]) == []
    [cleared] = after.clearances()
    assert cleared.violation_id == v.violation_id and cleared.cleared_at == at(120 * 60)


def test_a_silent_sensor_stays_silent_since_it_was_last_heard_across_a_restart(
    tmp_path: Path,
) -> None:
    silent = rule(
        "bin-silent",
        condition={"kind": "metric", "subject": "bin", "threshold": {"silent_for": "30m"}},
    )
    before = engine(tmp_path / "before", silent, external_clock=True)
    before.advance(at(0))
    feed(before, "bin-1", "fill_pct", minutes([40] * 10))  # last heard at 9 min
    feed(before, "bin-2", "fill_pct", minutes([40] * 20))
    assert before.advance(at(20 * 60)) == []
    after = _restarted(tmp_path, before, silent, external_clock=True)
    after.advance(at(25 * 60))  # the box is back 5 minutes later
    feed(after, "bin-2", "fill_pct", minutes([40] * 25, start_min=25))
    [v] = after.advance(at(45 * 60))
    assert v.devices == ("bin-1",) and v.opened_at == at(9 * 60 + 30 * 60)


def test_saved_states_of_thresholds_no_rule_has_are_skipped(tmp_path: Path) -> None:
    before = engine(tmp_path / "before", BIN_FULL)
    feed(before, "bin-1", "fill_pct", minutes([95] * 3))
    stricter = rule(
        "bin-full",
        condition={"kind": "metric", "threshold": {"metric": "fill_pct", "above": 95}},
    )
    after = _restarted(tmp_path, before, stricter)
    assert after.thresholds.stats["restore_skipped"] == 1
    assert after.thresholds.snapshot()["states"] == []
    with pytest.raises(ValueError, match="threshold state version 7, expected 1"):
        after.thresholds.restore({"version": 7, "states": []})
