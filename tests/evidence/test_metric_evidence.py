"""A sensor case's package: the metric series around the episode as data and as a small plot,
built from real readings in the real journal by the real engine, signed and verified."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import yaml

from detectors.metrics import metric_observation
from evidence.builder import EvidenceBuilder
from evidence.keys import Signer
from evidence.metric_plot import metric_series, plot_png
from evidence.verify import verify_package
from ingest.config import load_config
from ingest.journal import Journal
from ingest.readings import Metric, Reading, Stream, TimeFlag
from rules.engine import Engine
from rules.schema import load_rules

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 Asia/Shanghai


def _site(tmp_path: Path):
    doc = {
        "site": {"id": "t-site", "timezone": "Asia/Shanghai"},
        "storage": {"root": str(tmp_path / "var")},
        "devices": [
            {
                "id": "bin-1",
                "kind": "sensor",
                "facility": "bin",
                "location": {"lat": 31.2, "lon": 121.4},
                "metrics": {"fill_pct": {"unit": "%", "min": 0, "max": 100}},
            }
        ],
    }
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bin.yaml").write_text(
        (Path(__file__).resolve().parents[2] / "rules/catalog/bin-full.yaml").read_text()
    )
    config = load_config(path)
    return config, load_rules(rules, config)


def _fill(minute: int) -> float:
    """Rises from 40 %, crosses 90 % at minute 20 and hovers at 84-96 % after it."""
    if minute < 20:
        return 40.0 + 2.4 * minute
    return 90.0 + 6.0 * np.sin(minute / 2.0) if minute > 20 else 91.0


def _readings(config, minutes: int) -> list[Reading]:
    out = []
    for m in range(minutes):
        ts = START + timedelta(minutes=m)
        key = hashlib.sha256(f"bin-1/{m}".encode()).hexdigest()[:32]
        value = round(float(_fill(m)), 1)
        sample = Metric("fill_pct", value, "%")
        out.append(Reading(key, "bin-1", Stream.METRICS, ts, ts, TimeFlag.OK, sample))
    return out


def test_a_bin_case_package_holds_the_series_and_a_readable_plot(tmp_path: Path) -> None:
    config, rules = _site(tmp_path)
    journal = Journal(tmp_path / "journal.sqlite")
    readings = _readings(config, 70)
    journal.write(readings)
    engine = Engine(rules, config)
    device = config.device("bin-1")
    violations = []
    for r in readings:
        violations += engine.process(metric_observation(device, r.event_ts, r.payload))
    [violation] = violations
    assert violation.opened_at == START + timedelta(minutes=50)  # crossing at 20 + 30 min dwell

    builder = EvidenceBuilder(config, Signer.load_or_create(tmp_path / "k.pem"), None, journal)
    path = builder.build(violation)
    report, manifest = verify_package(path)
    assert report.ok, report.findings
    listed = {f["path"]: f for f in manifest["files"]}
    assert {"data/metric_series.json", "media/bin-1/fill_pct.png"} <= set(listed)

    [entry] = json.loads((path / "data/metric_series.json").read_text())["series"]
    assert entry["device_id"] == "bin-1" and entry["metric"] == "fill_pct" and entry["unit"] == "%"
    assert entry["threshold"]["above"] == 90 and entry["threshold"]["clear"] == 80
    assert entry["episode"]["start"] == (START + timedelta(minutes=20)).isoformat()
    # an hour of series before the episode (evidence.sensor_series: 1h) up to the opening
    assert entry["points"][0]["ts"] == START.isoformat()
    assert entry["points"][-1]["ts"] == (START + timedelta(minutes=50)).isoformat()
    assert len(entry["points"]) == 51

    png = (path / "media/bin-1/fill_pct.png").read_bytes()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (300, 640)
    assert len(png) < 80_000
    # the episode is shaded (a light red band), the threshold drawn in red
    b, g, r = (image[..., i].astype(int) for i in range(3))
    assert ((r > 240) & (g > 180) & (g < 225) & (b > 180) & (b < 225)).sum() > 2000
    assert ((r > 170) & (g < 40) & (b < 40)).sum() > 200
    # the same data gives the same bytes: a rebuilt package hashes the same
    assert plot_png(entry, config.site.tz) == png
    journal.close()


def test_without_metric_readings_there_is_no_block() -> None:
    assert metric_series([], []) == []
