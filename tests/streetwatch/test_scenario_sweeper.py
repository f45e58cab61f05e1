"""The simulated sweeper: a deterministic round that sweeps all but its last segment."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from detectors.coverage import CoverageDetector
from ingest.config import load_config
from streetwatch.scenario import build_scenario
from streetwatch.scenario_sweeper import round_s, sweeper_plan, with_deadlines_at
from tests.conftest import REPO

START = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)  # 06:00 in Shanghai


def test_the_round_sweeps_all_but_the_last_segment_and_is_reproducible() -> None:
    site = load_config(REPO / "devices.yaml")
    device = site.device("gps-sweeper-03")
    # the sweeper alone: each device draws from its own random stream, so this is its round
    site = site.model_copy(update={"devices": [device]})
    assert sweeper_plan(device) == (["wanping-w", "xietu-n"], "tianping-e")
    topic = site.default_topic(device.id, device.streams[0])
    messages = [
        m for m in build_scenario(site, duration_s=600, seed=4, start=START) if m.topic == topic
    ]
    again = [
        m for m in build_scenario(site, duration_s=600, seed=4, start=START) if m.topic == topic
    ]
    assert [m.payload for m in messages] == [m.payload for m in again]
    assert len(messages) == 600
    det = CoverageDetector(device.id, device.sweeping, site.site.tz, Counter())
    for message in messages:
        fix = json.loads(message.payload)
        ts = datetime.fromisoformat(fix["ts"])
        det.process(ts, fix["lon"], fix["lat"], fix["speed_kmh"])
    assert {f.id: f.passes for f in det.figures()} == {
        "wanping-w": 1,
        "xietu-n": 1,
        "tianping-e": 0,
    }
    standing = [
        json.loads(m.payload)["speed_kmh"] for m in messages[int(round_s(site, device)) + 5 :]
    ]
    assert standing and set(standing) == {0.0}  # then it waits, still reporting


def test_deadlines_move_into_a_run() -> None:
    site = load_config(REPO / "devices.yaml")
    moved = with_deadlines_at(site, START + timedelta(minutes=7, seconds=30))
    sweeping = moved.device("gps-sweeper-03").sweeping
    assert {s.deadline for s in sweeping.segments} == {dt.time(6, 7, 30)}
    assert site.device("gps-sweeper-03").sweeping.segments[0].deadline == dt.time(7, 30)
