"""Sweeper coverage on constructed tracks: what counts as a pass, deadlines, local days."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from detectors.coverage import CoverageDetector
from detectors.geofence import LocalProjection
from ingest.config.sweeping import Sweeping

TZ = ZoneInfo("Asia/Shanghai")
PROJ = LocalProjection(121.4373, 31.1953)
MORNING = datetime(2026, 12, 4, 6, 0, tzinfo=TZ)


def lonlat(x: float, y: float) -> list[float]:
    return list(PROJ.lonlat(x, y))


def sweeping(**over: object) -> Sweeping:
    """A: 200 m west to east along y=0; B: 150 m south to north along x=400."""
    doc = {
        "segments": [
            {"id": "A", "name": "Main St", "line": [lonlat(0, 0), lonlat(200, 0)],
             "deadline": "09:00"},
            {"id": "B", "line": [lonlat(400, 0), lonlat(400, 150)], "deadline": "10:00"},
        ]
    }  # fmt: skip
    doc.update(over)
    return Sweeping.model_validate(doc)


def detector(config: Sweeping | None = None) -> CoverageDetector:
    return CoverageDetector("sweeper-01", config or sweeping(), TZ, Counter(), PROJ)


def drive(
    det: CoverageDetector,
    path: list[tuple[float, float]],
    start: datetime,
    kmh: float,
    *,
    period_s: float = 1.0,
    jitter_m: float = 0.0,
    seed: int = 1,
    report_speed: bool = True,
) -> tuple[list, datetime]:
    """Fixes every `period_s` along `path` (local metres) at `kmh`; (observations, end time)."""
    rng = random.Random(seed)
    out: list = []
    step = kmh / 3.6 * period_s
    t = start
    for (x0, y0), (x1, y1) in itertools.pairwise(path):
        length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
        n = max(1, round(length / step))
        for i in range(n):
            f = i / n
            x = x0 + f * (x1 - x0) + rng.gauss(0, jitter_m)
            y = y0 + f * (y1 - y0) + rng.gauss(0, jitter_m)
            out += det.process(t, *PROJ.lonlat(x, y), kmh if report_speed else None)
            t += timedelta(seconds=period_s)
    out += det.process(t, *PROJ.lonlat(*path[-1]), kmh if report_speed else None)
    return out, t


def passes(det: CoverageDetector) -> dict[str, int]:
    return {f.id: f.passes for f in det.figures()}


def test_a_full_pass_at_working_speed_covers_the_segment() -> None:
    det = detector()
    out, _ = drive(det, [(-30, 0), (230, 0)], MORNING, 10)
    assert passes(det) == {"A": 1, "B": 0}
    [obs] = out
    assert (obs.kind.value, obs.subject, obs.subject_id, obs.zone_id) == (
        "coverage", "segment", "A", "A",
    )  # fmt: skip
    assert obs.state == "covered" and obs.attributes["passes"] == 1
    assert obs.first_seen == datetime(2026, 12, 4, tzinfo=TZ)
    assert abs(obs.location.lon - PROJ.lonlat(100, 0)[0]) < 1e-6
    assert det.stats["coverage_passes"] == 1


def test_implied_speed_counts_when_the_unit_reports_none() -> None:
    det = detector()
    drive(det, [(-30, 0), (230, 0)], MORNING, 12, report_speed=False)
    assert passes(det)["A"] == 1


def test_half_a_pass_is_no_pass() -> None:
    det = detector()
    out, _ = drive(det, [(-30, 0), (100, 0), (100, 80)], MORNING, 10)
    assert out == [] and passes(det)["A"] == 0


@pytest.mark.parametrize("kmh", [1.0, 35.0])
def test_outside_the_working_speed_is_driving_past_or_standing(kmh: float) -> None:
    det = detector()
    drive(det, [(-30, 0), (230, 0)], MORNING, kmh, period_s=2.0 if kmh < 3 else 1.0)
    assert passes(det)["A"] == 0


def test_out_and_back_is_two_passes_whether_it_leaves_the_buffer_or_turns_inside() -> None:
    config = sweeping(segments=[
        {"id": "A", "line": [lonlat(0, 0), lonlat(200, 0)], "deadline": "09:00", "passes": 2},
    ])  # fmt: skip
    turned = detector(config)
    out, _ = drive(turned, [(-30, 0), (205, 0), (-30, 0)], MORNING, 10)
    assert [o.state for o in out] == ["partial", "covered"]
    assert passes(turned)["A"] == 2 and turned.stats["coverage_turns"] == 1
    left = detector(config)
    drive(left, [(-30, 0), (230, 0), (230, 60), (-30, 60), (-30, 0), (230, 0)], MORNING, 10)
    assert passes(left)["A"] == 2


def test_reverse_direction_counts_unless_the_segment_is_one_way() -> None:
    det = detector()
    drive(det, [(230, 0), (-30, 0)], MORNING, 10)
    assert passes(det)["A"] == 1
    one_way = detector(sweeping(direction="forward"))
    drive(one_way, [(230, 0), (-30, 0)], MORNING, 10)
    assert passes(one_way)["A"] == 0 and one_way.stats["coverage_wrong_direction"] == 1
    drive(one_way, [(-30, 0), (230, 0)], MORNING + timedelta(minutes=5), 10)
    assert passes(one_way)["A"] == 1


def test_gps_jitter_neither_loses_nor_doubles_a_pass() -> None:
    for seed in range(5):
        det = detector()
        drive(det, [(-30, 0), (230, 0)], MORNING, 8, jitter_m=3.0, seed=seed)
        assert passes(det)["A"] == 1, seed
        assert det.stats["coverage_turns"] == 0


def test_fixes_far_apart_in_time_do_not_vouch_for_the_road_between() -> None:
    det = detector(sweeping(max_gap_s=30))
    drive(det, [(-30, 0), (230, 0)], MORNING, 10, period_s=40)
    assert passes(det)["A"] == 0


def test_deadline_without_fixes_reports_the_uncovered_segment_with_the_days_figures() -> None:
    det = detector()
    assert det.tick(MORNING) == []
    drive(det, [(-30, 0), (230, 0)], MORNING, 10)
    assert det.tick(datetime(2026, 12, 4, 9, 30, tzinfo=TZ)) == []  # A covered by 09:00
    [obs] = det.tick(datetime(2026, 12, 4, 10, 0, 5, tzinfo=TZ))
    assert (obs.subject_id, obs.state) == ("B", "uncovered")
    assert obs.first_seen == datetime(2026, 12, 4, 10, 0, tzinfo=TZ)
    assert obs.attributes["passes"] == 0 and obs.attributes["required"] == 1
    figures = {f["id"]: (f["passes"], f["covered"]) for f in obs.attributes["segments"]}
    assert figures == {"A": (1, True), "B": (0, False)}
    assert det.tick(datetime(2026, 12, 4, 11, tzinfo=TZ)) == []  # reported once
    late, _ = drive(det, [(400, -30), (400, 180)], datetime(2026, 12, 4, 11, tzinfo=TZ), 10)
    [covered] = late
    assert covered.state == "covered" and covered.subject_id == "B"
    assert covered.first_seen == datetime(2026, 12, 4, tzinfo=TZ)
    assert det.stats["coverage_covered_late"] == 1


def test_a_pass_finished_after_the_deadline_is_late() -> None:
    det = detector()
    det.tick(datetime(2026, 12, 4, 8, 59, 0, tzinfo=TZ))
    out, _ = drive(det, [(-30, 0), (230, 0)], datetime(2026, 12, 4, 8, 59, 30, tzinfo=TZ), 10)
    assert [(o.subject_id, o.state) for o in out] == [("A", "uncovered"), ("A", "covered")]


def test_a_deadline_before_the_box_watched_is_not_judged() -> None:
    det = detector()
    assert det.tick(datetime(2026, 12, 4, 9, 30, tzinfo=TZ)) == []  # switched on after A's
    [obs] = det.tick(datetime(2026, 12, 4, 10, 1, tzinfo=TZ))
    assert obs.subject_id == "B"
    assert det.stats["coverage_deadline_not_watched"] == 1


def test_the_local_day_resets_passes_and_ends_an_uncovered_day_as_missed() -> None:
    det = detector()
    drive(det, [(-30, 0), (230, 0)], MORNING, 10)
    det.tick(datetime(2026, 12, 4, 23, 0, tzinfo=TZ))
    midnight = datetime(2026, 12, 5, tzinfo=TZ)
    [missed] = det.tick(midnight + timedelta(seconds=1))
    assert (missed.subject_id, missed.state) == ("B", "missed")
    assert missed.first_seen == datetime(2026, 12, 4, 10, tzinfo=TZ)
    assert missed.last_seen == midnight + timedelta(seconds=1)  # when the box noticed
    assert passes(det) == {"A": 0, "B": 0} and det.stats["coverage_days"] == 1
    late, _ = drive(det, [(-30, 0), (230, 0)], datetime(2026, 12, 5, 6, tzinfo=TZ), 10)
    assert late[0].first_seen == midnight and passes(det)["A"] == 1
    out = det.tick(datetime(2026, 12, 5, 10, 0, 1, tzinfo=TZ))
    assert [(o.subject_id, o.state) for o in out] == [("B", "uncovered")]


def test_a_traversal_straddling_midnight_counts_for_the_new_day_only() -> None:
    det = detector()
    start = datetime(2026, 12, 4, 23, 59, 40, tzinfo=TZ)
    drive(det, [(-30, 0), (230, 0)], start, 10)
    assert passes(det)["A"] == 1
    assert det.figures()[0].deadline.startswith("2026-12-05")


def test_state_survives_a_restart_mid_traversal() -> None:
    det = detector()
    _, t = drive(det, [(-30, 0), (120, 0)], MORNING, 10)
    saved = det.snapshot()
    again = detector()
    again.restore(saved)
    out, _ = drive(again, [(120, 0), (230, 0)], t + timedelta(seconds=1), 10)
    assert [o.state for o in out] == ["covered"] and passes(again)["A"] == 1


def test_segments_drawn_on_a_gcj02_map_are_moved_to_wgs84() -> None:
    wgs = sweeping()
    gcj_lines = []
    from ingest.coords import wgs84_to_gcj02

    for segment in wgs.segments:
        gcj_lines.append([list(reversed(wgs84_to_gcj02(lat, lon))) for lon, lat in segment.line])
    gcj = sweeping(
        crs="gcj02",
        segments=[
            {"id": s.id, "line": line, "deadline": "09:00"}
            for s, line in zip(wgs.segments, gcj_lines, strict=True)
        ],
    )
    for a, b in zip(wgs.segments, gcj.segments, strict=True):
        for (lon0, lat0), (lon1, lat1) in zip(wgs.line_wgs84(a), gcj.line_wgs84(b), strict=True):
            assert abs(lon0 - lon1) < 1e-7 and abs(lat0 - lat1) < 1e-7
    det = detector(gcj)
    drive(det, [(-30, 0), (230, 0)], MORNING, 10)
    assert passes(det)["A"] == 1


def _sweeper_readings(site, hdop: float = 1.0) -> list:
    """GPS readings of the shipped sweeper along wanping-w (south to north) at 8 km/h."""
    from ingest.readings import GpsFix, Reading, Stream, TimeFlag

    device = site.device("gps-sweeper-03")
    lon, (lat0, lat1) = 121.4335, (31.1923, 31.1947)
    n = int((lat1 - lat0) * 111_195 / (8 / 3.6))
    out = []
    for i in range(n + 1):
        ts = MORNING + timedelta(seconds=i)
        fix = GpsFix(lat0 + (lat1 - lat0) * i / n, lon, 8.0, 0.0, hdop, 12)
        out.append(Reading(f"k{i}", device.id, Stream.GPS, ts, ts, TimeFlag.OK, fix))
    return out


def test_sensor_detectors_feed_only_accepted_fixes_and_keep_coverage_across_a_restart() -> None:
    from detectors.sensors import SensorDetectors
    from ingest.config import load_config
    from tests.conftest import REPO

    site = load_config(REPO / "devices.yaml")
    readings = _sweeper_readings(site)
    half = len(readings) // 2
    first = SensorDetectors(site)
    for r in readings[:half]:
        assert first.process(r) == []
    restarted = SensorDetectors(site)
    restarted.restore(first.snapshot())
    out = [o for r in readings[half:] for o in restarted.process(r)]
    assert [(o.subject_id, o.state) for o in out] == [("wanping-w", "covered")]
    assert restarted.stats["observations.coverage"] == 1
    blurred = SensorDetectors(site)
    for r in _sweeper_readings(site, hdop=9.0):
        assert blurred.process(r) == []
    assert blurred.stats["coverage_fixes"] == 0 and blurred.stats["gps_rejected.hdop"] > 0
