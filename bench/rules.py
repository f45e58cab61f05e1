"""Rules engine throughput: observations/s through `Engine.process` with 50 rules and 10,000 live
subjects, on one core.

A synthetic site (20 cameras with 5 zones each, 40 geomagnetic bays) and 50 rules of the
catalog's shapes (presence by class and zone kind with dwell, schedules, per-zone dedup, a
min_count, an `all` of bay + camera, occupancy by bay). 10,000 subjects live at once (9,600
camera tracks, 400 bay situations), each re-reported once per event-second as detectors do,
for `--seconds` event-seconds; `advance` runs once per event-second as the pipeline's
watermark does. Observations are built before the clock starts, so the figure is the engine
alone. Last line: `observations_per_s: N /s` (the median of `--repeat` runs).

The limit, in the same run on the same observations: a bare Python loop doing the least any
dwell rule must do per report: one dict lookup of the subject's state by (device, subject, zone),
storing its start the first time, else comparing the dwell with a threshold
(`limit_bare_loop_per_s`, the median of as many runs). `ratio_to_bare_loop` is the engine's rate
over it: what 50 rules, their indexes, schedules, dedup and violations cost beyond one rule
that cannot be written faster in Python.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import SiteConfig
from rules.engine import Engine
from rules.schema import load_rules

ZONE_KINDS = ["no_parking", "sidewalk", "shopfront", "fire_lane", "restricted"]
SUBJECTS = ["person", "bicycle", "motorcycle", "car", "goods", "stall", "truck", "tricycle"]
CAMERAS = 20
BAYS = 40
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def site() -> SiteConfig:
    square = [[0, 0], [100, 0], [100, 100], [0, 100]]
    merchants = [
        {
            "id": f"m-{c}",
            "name": f"shop {c}",
            "licence_no": f"L{c}",
            "shopfront": [[121.0, 31.0], [121.001, 31.0], [121.001, 31.001]],
        }
        for c in range(CAMERAS)
    ]
    devices: list[dict] = []
    for c in range(CAMERAS):
        zones = []
        for z, kind in enumerate(ZONE_KINDS):
            zone = {"id": f"c{c}-z{z}", "kind": kind, "polygon": square}
            if kind == "shopfront":
                zone["merchant"] = f"m-{c}"
            zones.append(zone)
        devices.append(
            {
                "id": f"cam-{c}",
                "kind": "camera",
                "zones": zones,
                "location": {"lat": 31.0, "lon": 121.0},
            }
        )
    for b in range(BAYS):
        devices.append({"id": f"mag-{b}", "kind": "geomagnetic", "bay": f"bay-{b}"})
    return SiteConfig.model_validate(
        {
            "site": {"id": "bench", "timezone": "Asia/Shanghai"},
            "merchants": merchants,
            "devices": devices,
        }
    )


def rules() -> list[dict]:
    out: list[dict] = []
    rng = random.Random(7)
    for i in range(40):
        kinds = rng.sample(ZONE_KINDS, rng.randint(1, 2))
        condition: dict = {
            "kind": "presence",
            "subject": rng.sample(SUBJECTS, rng.randint(1, 3)),
            "zone_kind": kinds,
            "dwell": f"{rng.randint(1, 10)}m",
        }
        if i % 10 == 3:
            condition["min_count"] = 2
        rule: dict = {
            "id": f"presence-{i}",
            "name": f"presence {i}",
            "category": "bench/x",
            "condition": condition,
            "cooldown": "10m",
        }
        if i % 4 == 0:
            rule["schedule"] = {"windows": ["07:00-22:00"]}
        if i % 3 == 0:
            rule["dedup"] = "zone"
        if kinds == ["shopfront"]:
            rule["party"] = "merchant"
        out.append(rule)
    for i in range(8):
        bays = [f"bay-{b}" for b in range(i * 5, i * 5 + 5)]
        out.append(
            {
                "id": f"bay-{i}",
                "name": f"bay {i}",
                "category": "bench/y",
                "condition": {"kind": "occupancy", "zone": bays, "dwell": "30s"},
                "cooldown": "10m",
            }
        )
    for i in range(2):
        out.append(
            {
                "id": f"confirmed-{i}",
                "name": "bay and camera",
                "category": "bench/z",
                "condition": {
                    "all": [
                        {"kind": "occupancy", "zone": [f"bay-{i}"], "dwell": "30s"},
                        {"kind": "presence", "subject": "car", "zone": [f"c{i}-z3"]},
                    ],
                    "within": "30s",
                    "places": [[f"bay-{i}", f"c{i}-z3"]],
                },
            }
        )
    return out


def observations(seconds: int, subjects: int) -> list[list[Observation]]:
    """Per event-second, one report of every live subject (order shuffled a little)."""
    rng = random.Random(11)
    tracks = []
    bays = min(BAYS * 10, subjects // 25)
    for s in range(subjects - bays):
        cam = rng.randrange(CAMERAS)
        z = rng.randrange(len(ZONE_KINDS))
        tracks.append(
            (
                ObservationKind.PRESENCE,
                f"cam-{cam}",
                rng.choice(SUBJECTS),
                str(s),
                f"c{cam}-z{z}",
                ZONE_KINDS[z],
                None,
                -rng.uniform(0, 900),
            )
        )
    for s in range(bays):
        b = s % BAYS
        tracks.append(
            (
                ObservationKind.OCCUPANCY,
                f"mag-{b}",
                "car",
                f"bay-{b}-{s}",
                f"bay-{b}",
                None,
                "occupied",
                -rng.uniform(0, 120),
            )
        )
    point = GeoPoint(121.0, 31.0)
    out = []
    for second in range(seconds):
        batch = []
        for kind, device, subject, sid, zone, zone_kind, state, first in tracks:
            jitter = rng.uniform(-0.5, 0.5)
            batch.append(
                Observation(
                    kind,
                    device,
                    subject,
                    sid,
                    START + timedelta(seconds=first),
                    START + timedelta(seconds=second + jitter),
                    zone_id=zone,
                    zone_kind=zone_kind,
                    state=state,
                    location=point,
                )
            )
        out.append(batch)
    return out


def run_once(engine: Engine, batches: list[list[Observation]]) -> tuple[float, int, int]:
    process, advance = engine.process, engine.advance
    opened = 0
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        for second, batch in enumerate(batches):
            for obs in batch:
                found = process(obs)
                if found:
                    opened += len(found)
            opened += len(advance(START + timedelta(seconds=second)))
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    return elapsed, sum(len(b) for b in batches), opened


def bare_loop(batches: list[list[Observation]]) -> tuple[float, int]:
    """The floor: one dwell state per (device, subject, zone), nothing else."""
    states: dict[tuple[str, str, str | None], float] = {}
    over = 0
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        for batch in batches:
            for obs in batch:
                key = (obs.device_id, obs.subject_id, obs.zone_id)
                since = states.get(key)
                if since is None:
                    states[key] = obs.first_seen.timestamp()
                elif obs.last_seen.timestamp() - since >= 60.0:
                    over += 1
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    return elapsed, over


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    config = site()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench.yaml").write_text(yaml.safe_dump({"rules": rules()}))
        rule_set = load_rules(folder, config)
    print(f"rules: {len(rule_set)}, subjects: {args.subjects}, event-seconds: {args.seconds}")
    batches = observations(args.seconds, args.subjects)
    rates, floors = [], []
    for k in range(args.repeat):
        engine = Engine(rule_set, config, tolerance_s=5.0)
        elapsed, count, opened = run_once(engine, batches)
        rate = count / elapsed
        rates.append(rate)
        print(
            f"run {k + 1}: {count} observations in {elapsed:.2f} s = {rate:,.0f} /s; "
            f"violations {opened}, live subject-rule states {engine.live_subjects()}, "
            f"late {engine.stats['late_dropped']}"
        )
        elapsed, over = bare_loop(batches)
        floors.append(count / elapsed)
        print(
            f"  limit: bare loop (one dwell state per subject, dict lookup and compare) in "
            f"{elapsed:.3f} s = {floors[-1]:,.0f} /s ({over} over)"
        )
    rate, limit = statistics.median(rates), statistics.median(floors)
    print(f"range: {min(rates):,.0f} - {max(rates):,.0f} /s")
    print(f"limit_bare_loop_per_s: {limit:.0f} /s")
    print(f"ratio_to_bare_loop: {rate / limit:.3f}")
    print(f"observations_per_s: {rate:.0f} /s")


if __name__ == "__main__":
    main()
