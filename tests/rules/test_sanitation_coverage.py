"""The catalog's sanitation-coverage rule on the coverage detector's own reports."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from detectors.coverage import CoverageDetector
from detectors.geofence import LocalProjection
from ingest.config import load_config
from rules.engine import Engine
from rules.schema import load_rules

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 12, 4, tzinfo=TZ)


@pytest.fixture(scope="module")
def site():
    config = load_config("devices.yaml")
    return config, load_rules("rules/catalog", config)


def sweeper(site) -> CoverageDetector:
    device = site[0].device("gps-sweeper-03")
    return CoverageDetector(device.id, device.sweeping, TZ, Counter())


def sweep(det: CoverageDetector, segment_id: str, start: datetime, kmh: float = 8.0) -> list:
    """Fixes along the segment (20 m before to 20 m after) at `kmh`, one a second."""
    road = next(r for r in det.roads if r.id == segment_id)
    proj: LocalProjection = det.projection
    line = road.line
    out: list = []
    n = int((road.length_m + 40) / (kmh / 3.6))
    for i in range(n + 1):
        along = -20 + i * kmh / 3.6
        clamped = min(max(along, 0.0), road.length_m)
        p = line.interpolate(clamped)
        (x0, y0), (x1, y1) = line.coords[0], line.coords[-1]
        extra = along - clamped
        ux, uy = (x1 - x0) / road.length_m, (y1 - y0) / road.length_m
        out += det.process(
            start + timedelta(seconds=i), *proj.lonlat(p.x + extra * ux, p.y + extra * uy), kmh
        )
    return out


RULE = "sanitation-segment-uncovered"


def run(engine: Engine, observations: list, until: datetime | None = None) -> list:
    """This rule's violations (other catalog rules, e.g. silent devices, may fire besides)."""
    out = []
    for obs in observations:
        out += engine.process(obs)
    if until is not None:
        out += engine.advance(until)
    return [v for v in out if v.rule_id == RULE]


def cleared(engine: Engine) -> list:
    return [c for c in engine.clearances() if c.rule_id == RULE]


def test_a_segment_left_out_opens_one_case_at_its_deadline_and_nothing_else(site) -> None:
    engine = Engine(site[1], site[0])
    det = sweeper(site)
    obs = det.tick(DAY + timedelta(hours=6))
    obs += sweep(det, "wanping-w", DAY + timedelta(hours=6, minutes=10))
    obs += sweep(det, "xietu-n", DAY + timedelta(hours=6, minutes=20))
    assert run(engine, obs, DAY + timedelta(hours=8, minutes=29)) == []
    due = det.tick(DAY + timedelta(hours=8, minutes=30, seconds=1))
    [v] = run(engine, due, DAY + timedelta(hours=8, minutes=31))
    assert (v.rule_id, v.subject, v.subject_id, v.zone_id) == (
        RULE, "segment", "tianping-e", "tianping-e",
    )  # fmt: skip
    assert v.opened_at == DAY + timedelta(hours=8, minutes=30)
    assert v.dispose_within == timedelta(hours=4)
    assert v.location is not None and abs(v.location.lon - 121.4368) < 1e-6
    assert cleared(engine) == []
    later = det.tick(DAY + timedelta(hours=12))
    assert run(engine, later, DAY + timedelta(hours=12)) == []


def test_a_late_pass_clears_the_case_and_the_day_ending_clears_another(site) -> None:
    engine = Engine(site[1], site[0])
    det = sweeper(site)
    obs = det.tick(DAY + timedelta(hours=6))
    obs += det.tick(DAY + timedelta(hours=9))
    opened = run(engine, obs, DAY + timedelta(hours=9))
    assert sorted(v.subject_id for v in opened) == ["tianping-e", "wanping-w", "xietu-n"]
    late = sweep(det, "xietu-n", DAY + timedelta(hours=10))
    assert run(engine, late, DAY + timedelta(hours=10, minutes=5)) == []
    [late_clear] = cleared(engine)
    assert late_clear.observation.state == "covered" and late_clear.zone_id == "xietu-n"
    assert DAY + timedelta(hours=10) < late_clear.cleared_at < DAY + timedelta(hours=10, minutes=3)
    night = det.tick(DAY + timedelta(days=1, seconds=5))
    assert {o.state for o in night} == {"missed"}
    run(engine, night, DAY + timedelta(days=1, seconds=30))
    assert sorted(c.zone_id for c in cleared(engine)) == ["tianping-e", "wanping-w"]
    next_day = det.tick(DAY + timedelta(days=1, hours=9))
    again = run(engine, next_day, DAY + timedelta(days=1, hours=9))
    assert len(again) == 3 and not {v.violation_id for v in again} & {
        v.violation_id for v in opened
    }


def test_a_rule_may_name_segments_as_zones(site, tmp_path) -> None:
    from ingest.yamlsource import ConfigError

    folder = tmp_path / "rules"
    folder.mkdir()
    text = (
        "rules:\n"
        "  - {id: main-street, name: Main street first, category: 市容环卫/道路清扫,\n"
        "     condition: {kind: coverage, zone: [xietu-n], device: [gps-sweeper-03]}}\n"
    )
    (folder / "r.yaml").write_text(text, encoding="utf-8")
    [loaded] = load_rules(folder, site[0]).rules
    assert loaded.rule.condition.zone == ["xietu-n"]
    (folder / "r.yaml").write_text(text.replace("xietu-n", "xietu-s"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_rules(folder, site[0])
    assert "xietu-s" in str(caught.value)


def test_the_day_ending_is_not_late_behind_the_fix_that_shows_it(site) -> None:
    """Live runs judge lateness per device: `missed`, noticed by a fix 40 s after midnight,
    follows that fix's own observations and must not be dropped as late."""
    from detectors.observation import Observation, ObservationKind

    engine = Engine(site[1], site[0], external_clock=True)
    det = sweeper(site)
    det.tick(DAY + timedelta(hours=6))
    opened = run(engine, det.tick(DAY + timedelta(hours=8, minutes=31)))
    assert len(opened) == 3  # it never left the depot
    after = DAY + timedelta(days=1, seconds=40)
    health = Observation(
        ObservationKind.DEVICE_HEALTH, "gps-sweeper-03", "device", "gps-sweeper-03", after, after,
        state="ok",
    )  # fmt: skip
    engine.process(health)
    missed = [o for o in det.process(after, 121.4300, 31.1900, 0.0) if o.state == "missed"]
    assert len(missed) == 3
    run(engine, missed)
    assert engine.stats["late_dropped"] == 0
    assert sorted(c.zone_id for c in cleared(engine)) == ["tianping-e", "wanping-w", "xietu-n"]
