"""A sweeper's round through a real Mosquitto into `streetwatch run` (a real process): it sweeps
segment A, leaves B, and B's deadline opens exactly one case whose package draws the day."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from ingest.config import load_config
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.scenario import build_scenario
from streetwatch.scenario_sweeper import round_s
from streetwatch.simulate import scenario_start
from tests.conftest import REPO, market_site_text
from tests.runkit import RunProcess, cases_of, metric, publish, verify, wait_until

DURATION_S = 600.0
SPEED = 150.0


def sweeper_site(tmp_path: Path, deadline_after_s: float) -> tuple[Path, datetime]:
    """Only the sweeper, with A and B; the site's timezone puts the run near local noon (so the
    local day never ends mid-test), and both deadlines `deadline_after_s` into the round."""
    start = scenario_start(DURATION_S, SPEED)
    offset = 12 - start.astimezone(UTC).hour
    offset = max(-12, min(14, offset))
    tz = "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
    local = (start + timedelta(seconds=deadline_after_s)).astimezone(UTC) + timedelta(hours=offset)
    deadline = local.strftime("%H:%M:%S")
    doc = yaml.safe_load(market_site_text())
    doc["site"]["timezone"] = tz
    doc["storage"] = {"root": str(tmp_path / "var")}
    shipped = yaml.safe_load((REPO / "devices.yaml").read_text(encoding="utf-8"))
    sweeper = next(d for d in shipped["devices"] if d["id"] == "gps-sweeper-03")
    sweeper["sweeping"]["segments"] = [
        {"id": "seg-a", "name": "A", "deadline": deadline,
         "line": [[121.4335, 31.1925], [121.4335, 31.1945]]},
        {"id": "seg-b", "name": "B", "deadline": deadline,
         "line": [[121.4340, 31.1948], [121.4362, 31.1948]]},
    ]  # fmt: skip
    doc["devices"] = [sweeper]
    doc.pop("jt808", None)  # no vehicle terminals here: no TCP listener on a fixed port
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path, start


def test_a_segment_left_out_by_its_deadline_is_one_case_with_the_coverage_plot(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    probe, _ = sweeper_site(tmp_path, 400)
    site = load_config(probe)
    assert round_s(site, site.devices[0]) < 300  # A is swept well before the deadline
    config, start = sweeper_site(tmp_path, 400)
    site = load_config(config)
    messages = build_scenario(site, duration_s=DURATION_S, seed=2, start=start)
    var = tmp_path / "var"
    port = free_port()
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copyfile(REPO / "rules/catalog/sanitation-coverage.yaml", rules / "coverage.yaml")
    run = RunProcess(
        config, mosquitto, tmp_path / "run.log", "-r", str(rules), "--http-port", str(port)
    )
    report = publish(messages, mosquitto, speed=SPEED)
    assert report.acked == len(messages)
    wait_until(
        lambda: any(state not in ("opened",) for _, _, state in cases_of(var)),
        60,
        "the uncovered segment's case to be packaged",
    )
    wait_until(
        lambda: metric(port, "streetwatch_sensors_coverage_fixes_total", 0) >= len(messages) - 5,
        30,
        "the round analysed",
    )
    [(case_id, rule_id, _)] = cases_of(var)
    assert rule_id == "sanitation-segment-uncovered"
    assert metric(port, "streetwatch_sensors_coverage_passes_total") == 1
    assert metric(port, "streetwatch_sensors_coverage_segments_uncovered_total") == 1
    run.terminate()
    [manifest_path] = (var / "evidence").glob(f"*/{case_id}/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["subject"] == {"kind": "segment", "id": "seg-b"}
    files = {f["path"]: f["role"] for f in manifest["files"]}
    assert files["media/coverage/coverage.png"] == "coverage_plot"
    png = (manifest_path.parent / "media/coverage/coverage.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    figures = json.loads((manifest_path.parent / "data/coverage.json").read_text())
    assert [(s["id"], s["passes"], s["covered"]) for s in figures["segments"]] == [
        ("seg-a", 1, True),
        ("seg-b", 0, False),
    ]
    checked = verify(config, var / "evidence")
    assert checked.returncode == 0, checked.stdout + checked.stderr
