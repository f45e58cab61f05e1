"""`streetwatch run` with a drone: drone-car-park.mp4 as its video, the telemetry written for
the clip published over a real Mosquitto while the video plays, the real COCO model. A parked
car is placed on the ground inside the car park's geographic no-parking zone; the case's signed
evidence says where the car was (± metres) and where the drone was, and verifies."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from shapely.geometry import Point

from detectors.geofence import LocalProjection
from ingest.config import load_config
from streetwatch.localbroker import Mosquitto
from streetwatch.scenario_drone import FLIGHTS, publish_footage_telemetry
from tests.assets import shared_asset
from tests.conftest import REPO
from tests.runkit import wait_until

RULE = """\
id: no-parking-vehicle
name: Motor vehicle parked in a no-parking zone
category: 市容管理/机动车乱停放
severity: minor
condition:
  kind: presence
  subject: [car, van, truck, bus]
  zone_kind: [no_parking, fire_lane]
  dwell: 4s
  lost_after: 60s
cooldown: 30m
dedup: subject
evidence:
  pre: 4s
  post: 1s
  snapshots: true
  clip: false
"""


@pytest.fixture
def drone_site(tmp_path: Path) -> Path:
    footage = shared_asset("footage/drone-car-park.mp4")
    weights = shared_asset("models/yolov8n_int8_640.tflite")
    doc = yaml.safe_load((REPO / "devices.yaml").read_text(encoding="utf-8"))
    drone = next(d for d in doc["devices"] if d["id"] == "drone-02")
    drone["stream"] = str(footage)
    drone["detect"]["weights"] = str(weights)
    doc["devices"] = [drone]
    doc["merchants"] = []
    doc["storage"] = {"root": str(tmp_path / "var")}
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "no-parking-vehicle.yaml").write_text(RULE, encoding="utf-8")
    return path


def cases(var: Path) -> list[tuple[str, str, str | None]]:
    if not (var / "cases.sqlite").exists():
        return []
    db = sqlite3.connect(var / "cases.sqlite")
    try:
        return db.execute("SELECT rule_id, state, package FROM cases").fetchall()
    finally:
        db.close()


def test_a_drone_places_a_parked_car_in_a_geographic_zone(
    drone_site: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    log_path = tmp_path / "run.log"
    log = log_path.open("wb")
    # the video loops: however late the run's start lets the telemetry begin, a car dwells
    command = ["run", "-c", str(drone_site), "-r", str(tmp_path / "rules"), "--loop-video"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streetwatch", *command, "--broker", mosquitto.url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    stop = threading.Event()
    telemetry: threading.Thread | None = None
    try:

        def started() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            return "running:" in log_path.read_text()

        wait_until(started, 90, "streetwatch run to start")
        telemetry = publish_footage_telemetry(
            load_config(drone_site), mosquitto.url, 90.0, stop, client_id="test-footage"
        )
        assert telemetry is not None
        wait_until(lambda: bool(cases(var)), 60, "a case from the drone")
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
        log.close()
        if telemetry is not None:
            telemetry.join(60)
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    assert json.loads(out.decode().strip().splitlines()[-1])["pipeline"]["observations"] > 0
    db = sqlite3.connect(var / "journal.sqlite")
    rows = db.execute("SELECT data FROM observations WHERE device_id = 'drone-02'").fetchall()
    db.close()
    placed = [json.loads(data) for (data,) in rows]
    assert placed and all("ground" in o["attributes"] for o in placed if o["zone_id"])

    opened = [c for c in cases(var) if c[0] == "no-parking-vehicle"]
    assert opened and opened[0][2], cases(var)
    package = Path(opened[0][2])
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["subject"]["kind"] == "car"
    assert manifest["zone"] == {"id": "car-park-east-rows", "kind": "no_parking"}
    where = manifest["location"]
    assert where["source"] == "drone flat-ground projection"
    config = load_config(drone_site)
    zone = config.device("drone-02").zones[0]  # type: ignore[union-attr]
    local = LocalProjection.around(zone.polygon)
    assert local is not None
    point = local.xy(where["wgs84"]["lon"], where["wgs84"]["lat"])
    assert local.polygon(zone.polygon).buffer(2.5).contains(Point(point))
    assert 2.0 < where["uncertainty_m"] < 6.0
    assert where["ground"]["ground_range_m"] > 20
    flight = FLIGHTS["drone-car-park.mp4"]
    observer = where["observer"]
    assert observer["alt_m"] == flight.alt_m and observer["heading_deg"] == flight.heading_deg
    assert abs(observer["lat"] - flight.lat) < 2e-5 and abs(observer["lon"] - flight.lon) < 3e-5

    command = ["evidence", "verify", "-c", str(drone_site), str(package)]
    verify = subprocess.run(
        [sys.executable, "-m", "streetwatch", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
