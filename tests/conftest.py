from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from streetwatch.localbroker import Mosquitto

REPO = Path(__file__).resolve().parent.parent
EXTRA_CAMERAS = "  - id: cam-arcade-02\n"
"""Where devices.yaml's shared-asset cameras begin: they stand last in the file."""
MARKET_WEIGHTS = f"weights: {REPO.parent}/shared/assets/models/yolov8n_int8_640.tflite"


def market_site_text() -> str:
    """devices.yaml with one camera, the market camera on vtest.avi, for copies elsewhere: the
    demo's other cameras are left out and the shared assets' path made absolute (the file names
    them relative to itself)."""
    text = (REPO / "devices.yaml").read_text(encoding="utf-8")
    text = text[: text.index(EXTRA_CAMERAS)].replace("../shared/", f"{REPO.parent}/shared/")
    return text.replace("\n  port: 7611", "\n  port: 0")  # the JT/T 808 listener: any free port


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto on a free loopback port (MQTT v5, persistence on)."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()


def site_dict(tmp_path: Path, broker_url: str, **broker: object) -> dict:
    """A small site: one JSON GPS, one NMEA GPS (GCJ-02), two geomagnetic, a drone, a camera."""
    return {
        "site": {"id": "test-site", "timezone": "Asia/Shanghai"},
        "broker": {"url": broker_url, "client_id": "sw-test", "session_expiry_s": 3600, **broker},
        "ingest": {"flush_interval_ms": 20},
        "storage": {"root": str(tmp_path / "var")},
        "devices": [
            {"id": "gps-1", "kind": "gps", "format": "json"},
            {"id": "gps-nmea", "kind": "gps", "format": "nmea", "crs": "gcj02"},
            {"id": "mag-1", "kind": "geomagnetic"},
            {"id": "mag-2", "kind": "geomagnetic"},
            {"id": "drone-1", "kind": "drone"},
            {"id": "cam-1", "kind": "camera"},
            {"id": "legacy-gps", "kind": "gps", "topic": "fleet/+/position"},
        ],
    }


def write_site(tmp_path: Path, broker_url: str, **broker: object) -> Path:
    import yaml

    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(site_dict(tmp_path, broker_url, **broker), sort_keys=False))
    return path


@pytest.fixture
def keep_root_logging() -> Iterator[None]:
    """The CLI group installs a root log handler on the runner's stderr; undo that afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture(autouse=True)
def stop_leftover_runs() -> Iterator[None]:
    """Kill any `streetwatch run` process a test started and did not stop (it failed)."""
    yield
    from tests.runkit import stop_leftover_runs

    stop_leftover_runs()
