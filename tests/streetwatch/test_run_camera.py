"""`streetwatch run` with the demo's market camera on real footage (vtest.avi) and the COCO
model from the shared assets: the van and the car parked at the kerb become observations with
growing dwell, a no-parking-vehicle case (the demo's 20 s dwell) whose evidence package carries
a playable clip and verifies. (The old person model opened the demo's only camera case on a
jacket lying on the grass; tests/detectors/video/test_parked_subjects.py checks it is gone.)"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from streetwatch.localbroker import Mosquitto
from tests.assets import shared_asset
from tests.conftest import REPO, market_site_text

VTEST = REPO / "var" / "footage" / "vtest.avi"


@pytest.fixture
def camera_site(tmp_path: Path) -> Path:
    shared_asset("models/yolov8n_int8_640.tflite")
    if not VTEST.is_file():
        pytest.fail(f"{VTEST} is missing: run `make footage`")
    doc = yaml.safe_load(market_site_text())
    doc["storage"] = {"root": str(tmp_path / "var")}
    doc["devices"][0]["stream"] = str(VTEST)
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(REPO / "streetwatch" / "demo_rules" / "no-parking-vehicle.yaml", rules)
    return path


def test_camera_observations_and_a_case_from_real_footage(
    camera_site: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streetwatch",
            "run",
            "-c",
            str(camera_site),
            "-r",
            str(tmp_path / "rules"),
            "--broker",
            mosquitto.url,
            "--status-every",
            "2",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    deadline = time.monotonic() + 150
    cases: list[tuple] = []
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(2)
        if (var / "cases.sqlite").exists():
            db = sqlite3.connect(var / "cases.sqlite")
            cases = db.execute("SELECT case_id, rule_id, state, package FROM cases").fetchall()
            db.close()
            if any(state != "opened" for *_, state, _ in cases):
                break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    log.close()
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["pipeline"]["observations"] > 0

    db = sqlite3.connect(var / "journal.sqlite")
    rows = db.execute(
        "SELECT key, data FROM observations WHERE device_id = 'cam-market-01' ORDER BY seq"
    ).fetchall()
    db.close()
    dwell_by_key: dict[str, list[float]] = {}
    subjects: dict[str, set[str]] = {}
    for key, data in rows:
        obs = json.loads(data)
        subjects.setdefault(obs["zone_id"], set()).add(obs["subject"])
        dwell = (
            datetime.fromisoformat(obs["last_seen"]) - datetime.fromisoformat(obs["first_seen"])
        ).total_seconds()
        dwell_by_key.setdefault(key, []).append(dwell)
    assert subjects.get("no-parking-kerb", set()) <= {"car", "truck"}, subjects
    parked = [d for k, d in dwell_by_key.items() if "/no-parking-kerb/" in k]
    assert parked, sorted(dwell_by_key)[:10]
    longest = max(parked, key=lambda d: d[-1])
    assert longest[-1] >= 20.0 and longest == sorted(longest)

    built = [c for c in cases if c[1] == "no-parking-vehicle" and c[2] != "opened"]
    assert built, cases
    package = Path(built[0][3])
    clips = list((package / "media").rglob("*.mp4"))
    assert clips, sorted(str(p) for p in (package / "media").rglob("*"))
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            str(clips[0]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0 and "h264" in probe.stdout, probe.stderr
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "streetwatch",
            "evidence",
            "verify",
            "-c",
            str(camera_site),
            str(package),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
