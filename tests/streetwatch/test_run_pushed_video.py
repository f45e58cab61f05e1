"""Video that devices push, through `streetwatch run`: JPEG snapshots over MQTT become a
camera's frames (real model, real image), and the WHIP endpoint for WebRTC needs its token."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streetwatch.localbroker import Mosquitto, free_port
from tests.conftest import REPO

WEIGHTS = REPO / "var" / "models" / "person-yolov8s.pt"


def bus_jpeg() -> bytes:
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.submodule_search_locations
    return (Path(spec.submodule_search_locations[0]) / "assets" / "bus.jpg").read_bytes()


def site(tmp_path: Path, stream: str) -> tuple[Path, Path]:
    if not WEIGHTS.is_file():
        pytest.fail(f"{WEIGHTS} is missing: run `make footage`")
    doc = {
        "site": {"id": "push-site", "timezone": "Asia/Shanghai"},
        "storage": {"root": str(tmp_path / "var")},
        "devices": [
            {
                "id": "cam-push",
                "kind": "camera",
                "stream": stream,
                "location": {"lat": 31.2, "lon": 121.4},
                "detect": {
                    "weights": str(WEIGHTS),
                    "classes": {"Normal": "person", "Fall": "person"},
                    "imgsz": 640,
                },
                "zones": [
                    {
                        "id": "whole-view",
                        "kind": "sidewalk",
                        "polygon": [[0, 0], [810, 0], [810, 1080], [0, 1080]],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    rules = tmp_path / "rules"
    rules.mkdir()
    return path, rules


def start_run(
    config: Path, rules: Path, broker: Mosquitto, log: Path, *extra: str, **env: str
) -> tuple[subprocess.Popen, object]:
    err = log.open("wb")
    command = ["run", "-c", str(config), "-r", str(rules), "--broker", broker.url, *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streetwatch", *command, "--status-every", "1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=err,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    deadline = time.monotonic() + 90
    while "running:" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "streetwatch run did not start"
        time.sleep(0.2)
    return proc, err


def test_mqtt_snapshots_are_a_cameras_frames(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config, rules = site(tmp_path, "mqtt")
    proc, err = start_run(config, rules, mosquitto, tmp_path / "run.log")
    publisher = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="snap-pub", protocol=mqtt.MQTTv5
    )
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    jpeg = bus_jpeg()
    lag = timedelta(seconds=30)  # the camera's clock: its snapshots carry their own capture time
    start = datetime.now(UTC) - lag
    try:
        # A camera keeps sending while its scene lasts; only the newest snapshot is analysed, so
        # on a busy box fewer of them are: send until the observation shows (not a fixed eight)
        deadline = time.monotonic() + 90
        rows: list[tuple[str]] = []
        journal = tmp_path / "var" / "journal.sqlite"
        while time.monotonic() < deadline and not rows:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("ts", (datetime.now(UTC) - lag).isoformat())]
            topic = "streetwatch/push-site/cam-push/snapshot"
            publisher.publish(topic, jpeg, qos=1, properties=props).wait_for_publish(10)
            time.sleep(0.7)
            if journal.exists():
                db = sqlite3.connect(journal)
                rows = db.execute(
                    "SELECT data FROM observations WHERE device_id = 'cam-push'"
                ).fetchall()
                db.close()
    finally:
        publisher.loop_stop()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        err.close()
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    observations = [json.loads(data) for (data,) in rows]
    assert observations, (tmp_path / "run.log").read_text()[-3000:]
    assert {o["subject"] for o in observations} == {"person"}
    assert {o["zone_id"] for o in observations} == {"whole-view"}
    assert min(o["first_seen"] for o in observations) >= start.isoformat()


def test_webrtc_cameras_need_a_token_and_get_a_guarded_whip_endpoint(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config, rules = site(tmp_path, "webrtc")
    env = {k: v for k, v in os.environ.items() if k != "STREETWATCH_WHIP_TOKEN"}
    command = ["run", "-c", str(config), "-r", str(rules), "--broker", mosquitto.url]
    refused = subprocess.run(
        [sys.executable, "-m", "streetwatch", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert refused.returncode != 0
    assert "STREETWATCH_WHIP_TOKEN" in refused.stderr

    metrics_port = free_port()
    proc, err = start_run(
        config,
        rules,
        mosquitto,
        tmp_path / "run.log",
        "--whip-port",
        str(free_port()),
        "--http-port",
        str(metrics_port),
        STREETWATCH_WHIP_TOKEN="a-long-enough-whip-token",
    )
    try:
        log = (tmp_path / "run.log").read_text()
        assert "WHIP endpoint for pushed video at http://127.0.0.1:" in log
        url = log.split("WHIP endpoint for pushed video at ", 1)[1].split()[0]
        request = urllib.request.Request(
            f"{url}/cam-push",
            data=b"v=0\r\n",
            headers={"Content-Type": "application/sdp"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused_offer:
            urllib.request.urlopen(request, timeout=10)
        assert refused_offer.value.code == 401
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(metrics, timeout=10) as page:
            assert 'streetwatch_whip_unauthorised_total{kind=""} 1.0' in page.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        err.close()
    assert proc.returncode == 0
