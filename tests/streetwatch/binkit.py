"""A site of litter-bin fill sensors for the tests that run `streetwatch run` on metrics."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from streetwatch.pipeline import CATALOG
from streetwatch.scenario_context import SimMessage
from tests.conftest import market_site_text

BIN = {"unit": "%", "min": 0, "max": 100}
TOPIC = "streetwatch/demo-street/bin-a/metrics"


def bin_site(tmp_path: Path, names: tuple[str, ...], **storage: Any) -> Path:
    """devices.yaml with bins `bin-a` (located) and `bin-b`, and the catalog rules `names`
    copied to tmp_path/rules."""
    doc = yaml.safe_load(market_site_text())
    doc["storage"] = {"root": str(tmp_path / "var"), **storage}
    doc["devices"] = [
        {"id": "bin-a", "kind": "sensor", "facility": "bin", "metrics": {"fill_pct": BIN},
         "location": {"lat": 31.1953, "lon": 121.4372}},
        {"id": "bin-b", "kind": "sensor", "facility": "bin", "metrics": {"fill_pct": BIN}},
    ]  # fmt: skip
    doc.pop("merchants", None)
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in names:
        shutil.copyfile(CATALOG / name, rules / name)
    return path


def bin_levels(start: datetime, levels: list[float], first_minute: int = 0) -> list[SimMessage]:
    """bin-a's fill levels, one a minute of event time from `first_minute`, published one
    simulated minute apart."""
    out = []
    for i, level in enumerate(levels):
        ts = (start + timedelta(minutes=first_minute + i)).isoformat()
        payload = json.dumps({"ts": ts, "fill_pct": level}).encode()
        out.append(SimMessage(i * 60.0, TOPIC, payload))
    return out
