"""The Overview and Live pages' JSON and JPEG: a real camera pipeline on vtest.avi with the real
model, a real journal and case store, served by a real console; the annotation's pixels."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import httpx
import numpy as np
import pytest
import yaml

from detectors.camera import CameraPipeline
from detectors.liveview import LiveBox, LiveView
from evidence.cases import CaseStore, State
from ingest.config import SiteConfig, Zone, ZoneKind, load_config
from ingest.journal import DeadLetter, Journal
from ingest.readings import GeomagState, GpsFix, Reading, Stream, TimeFlag
from streetwatch.console.annotate import LEFT, MOTION, TRACK, annotate_jpeg, draw, zone_colour
from streetwatch.console.devicestatus import Rates, camera_figures, device_statuses
from streetwatch.console.live import live_jpeg
from streetwatch.console.overview import cases_since, local_midnight
from tests.assets import shared_asset
from tests.conftest import REPO, market_site_text
from tests.consolekit import serve_console
from tests.evidence.evidence_support import make_violation

PASSWORD = "overview-live-pass-1"
CAMERA = "cam-market-01"
GPS = "gps-patrol-01"
FRAMES = 16


def market_config(folder: Path) -> SiteConfig:
    doc = yaml.safe_load(market_site_text())
    doc["storage"] = {"root": str(folder / "var")}
    for device in doc["devices"]:
        if device.get("stream", "").startswith("var/"):
            device["stream"] = str(REPO / device["stream"])
    path = folder / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return load_config(path)


class BoxPipeline:
    """What the console reads of a running `Pipeline`: real cameras and a real journal, the
    health and counters a running one reports."""

    def __init__(self, config: SiteConfig, cameras: dict, journal: Journal) -> None:
        self.config = config
        self.cameras = cameras
        self.journal = journal

    def health(self) -> tuple[bool, dict[str, object]]:
        storage = {"root": "/var/x", "free_mb": 4096.0, "min_free_mb": 512.0, "full": False}
        stages = {"analyse": True, "package": False}
        return False, {"broker": "connected", "stages": stages, "storage": storage}

    def stage_counters(self) -> dict[str, dict[str, float]]:
        return {
            "feed": {"feed_backlog": 3, "delivered": 9},
            "storage": {"free_bytes": 4096.0 * 2**20, "disk_full": 0.0},
            "sink": {"sink_backlog": 17},
        }


def _reading(device: str, n: int, at: datetime) -> Reading:
    key = hashlib.sha256(f"{device}-{n}".encode()).hexdigest()[:32]
    if device.startswith("geomag"):
        return Reading(key, device, Stream.GEOMAG, at, at, TimeFlag.OK, GeomagState(True))
    fix = GpsFix(31.195 + n * 1e-5, 121.437, 12.0, 90.0)
    return Reading(key, device, Stream.GPS, at, at, TimeFlag.OK, fix)


def _dead(topic: str, at: datetime) -> DeadLetter:
    return DeadLetter.of(topic, b"{not json", "not_json", "bad JSON", at, 1024)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The market camera after FRAMES frames of vtest.avi, an idle camera (no frame yet), a
    journal with a GPS device's readings and dead letters, cases today and yesterday."""
    shared_asset("models/yolov8n_int8_640.tflite")
    folder = tmp_path_factory.mktemp("overview-live")
    config = market_config(folder)
    device = next(d for d in config.devices if d.id == CAMERA)
    if not Path(device.stream or "").is_file():
        pytest.skip(f"{device.stream} missing: run `make footage`")
    camera = CameraPipeline(device, config, lambda obs: None)
    camera.run_file(start=datetime.now(UTC) - timedelta(seconds=FRAMES / 10), max_frames=FRAMES)
    idle = CameraPipeline(device, config, lambda obs: None)
    journal = Journal(folder / "journal.sqlite")
    now = datetime.now(UTC)
    readings = [_reading(GPS, n, now - timedelta(seconds=2 * n)) for n in range(30)]
    readings.append(_reading("gps-muck-07", 99, now - timedelta(hours=2)))
    prefix = f"streetwatch/{config.site.id}"
    dead = [_dead(f"{prefix}/{GPS}/gps", now) for _ in range(2)]
    dead.append(_dead(f"{prefix}/nobody-99/gps", now))
    readings.append(_reading("geomag-fl-02", 1, now - timedelta(seconds=30)))
    dead.append(_dead(f"{prefix}/geomag-fl-02/geomag", now - timedelta(hours=2)))
    journal.write(readings, dead)
    cases = CaseStore(folder / "cases.sqlite")
    midnight = local_midnight(config.site.tz)
    for n, (rule, ago_h, state) in enumerate(
        [
            ("cross-door-trading", 0, None),
            ("cross-door-trading", 0, State.EVIDENCE_COMPLETE),
            ("fire-lane-parking", 0, None),
            ("fire-lane-parking", 30, None),  # before local midnight: not today
        ]
    ):
        at = max(midnight, datetime.now(UTC) - timedelta(minutes=1)) - timedelta(hours=ago_h)
        violation = dataclasses.replace(make_violation(at - timedelta(seconds=9), n), rule_id=rule)
        case, _ = cases.open(violation)
        if state is not None:
            cases.transition(case.case_id, state)
    pipeline = BoxPipeline(config, {CAMERA: camera, "cam-idle": idle}, journal)
    server = serve_console(
        config,
        folder / "console",
        cases=cases,
        pipeline=pipeline,
        sources=pipeline.stage_counters,
        health=pipeline.health,
    )
    server.ctx.users.add("vera", "viewer", PASSWORD)
    host, port = server.address
    client = httpx.Client(base_url=f"http://{host}:{port}", timeout=30)
    assert client.post("/login", data={"name": "vera", "password": PASSWORD}).status_code == 303
    try:
        yield {"client": client, "camera": camera, "config": config, "pipeline": pipeline}
    finally:
        client.close()
        server.stop()
        journal.close()


def test_cameras_api_names_each_camera_with_its_newest_frame_and_tracks(site) -> None:
    client, camera = site["client"], site["camera"]
    response = client.get("/api/v1/cameras")
    assert response.status_code == 200, response.text
    by_id = {c["id"]: c for c in response.json()}
    assert set(by_id) == {CAMERA, "cam-idle"}
    market = by_id[CAMERA]
    view = camera.live
    assert market["name"] == "Market street, looking north" and market["kind"] == "camera"
    assert market["frame_index"] == view.index
    assert datetime.fromisoformat(market["last_frame_ts"]) == view.ts
    assert (market["width"], market["height"]) == (768, 576)
    assert market["detect_ms"] is not None and market["detect_ms"] > 0
    assert {t["id"] for t in market["tracks"]} == {b.subject_id for b in view.boxes}
    assert market["tracks"] and all(t["dwell_s"] >= 0 for t in market["tracks"])
    zones = {z["id"]: z for z in market["zones"]}
    assert zones["no-parking-kerb"] == {"id": "no-parking-kerb", "kind": "no_parking",
                                        "colour": "#e6283c"}  # fmt: skip
    assert market["image_url"] == f"/api/v1/cameras/{CAMERA}/live.jpg"
    idle = by_id["cam-idle"]
    assert idle["frame_index"] is None and idle["tracks"] == [] and idle["fps"] is None


def test_live_jpeg_is_the_annotated_frame_encoded_once_per_frame(site) -> None:
    client, camera = site["client"], site["camera"]
    url = f"/api/v1/cameras/{CAMERA}/live.jpg"
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-frame-index"] == str(camera.live.index)
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (576, 768, 3)
    again = client.get(url)
    assert again.content == response.content
    assert live_jpeg(camera, camera.live) is live_jpeg(camera, camera.live)  # cached bytes
    etag = response.headers["etag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_live_jpeg_refuses_unknown_and_frameless_cameras(site) -> None:
    client = site["client"]
    unknown = client.get("/api/v1/cameras/cam-nowhere/live.jpg")
    assert unknown.status_code == 404
    assert "no camera 'cam-nowhere'" in unknown.json()["detail"]
    for odd in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E", "x" * 200):
        assert client.get(f"/api/v1/cameras/{odd}/live.jpg").status_code in (404, 422)
    idle = client.get("/api/v1/cameras/cam-idle/live.jpg")
    assert idle.status_code == 503 and "no frame yet" in idle.json()["detail"]
    anonymous = httpx.get(f"{client.base_url}/api/v1/cameras/{CAMERA}/live.jpg")
    assert anonymous.status_code == 401


def test_openapi_describes_the_jpeg_and_the_json(site) -> None:
    spec = site["client"].get("/api/openapi.json").json()
    jpeg = spec["paths"]["/api/v1/cameras/{device_id}/live.jpg"]["get"]
    assert "image/jpeg" in jpeg["responses"]["200"]["content"]
    assert {"404", "503"} <= set(jpeg["responses"])
    assert "/api/v1/cameras" in spec["paths"] and "/api/v1/overview" in spec["paths"]
    assert {"Overview", "DeviceStatus", "CameraLive", "CasesToday"} <= set(
        spec["components"]["schemas"]
    )
    assert "/" not in spec["paths"] and "/live" not in spec["paths"]


def test_overview_lists_devices_backlogs_and_todays_cases(site) -> None:
    client, config = site["client"], site["config"]
    response = client.get("/api/v1/overview")
    assert response.status_code == 200, response.text
    o = response.json()
    assert o["running"] is True and o["healthy"] is False
    assert o["problems"] == ["stage package has stopped"]
    assert o["broker"] == "connected"
    assert o["storage"] == {
        "free_bytes": 4096 * 2**20,
        "min_free_bytes": 512 * 2**20,
        "full": False,
    }
    assert o["feed_backlog"] == 3 and o["sink_backlog"] == 17
    devices = {d["id"]: d for d in o["devices"]}
    assert list(devices) == [d.id for d in config.devices]
    gps = devices[GPS]
    assert gps["kind"] == "gps" and gps["rate_unit"] == "/min"
    assert gps["rate"] == pytest.approx(30 / 5)
    assert gps["dead_letters"] == 2 and gps["health"] == "warn"
    assert gps["detail"].startswith("2 messages refused, the newest ")
    bay = devices["geomag-fl-02"]  # its one refused message is two hours old: counted only
    assert bay["health"] == "ok" and bay["dead_letters"] == 1 and bay["rate"] == pytest.approx(0.2)
    muck = devices["gps-muck-07"]  # one reading, two hours ago
    assert muck["health"] == "stale" and muck["rate"] == 0 and muck["last_message"] is not None
    assert devices["geomag-fl-01"]["health"] == "silent"
    assert devices["geomag-fl-01"]["last_message"] is None
    market = devices[CAMERA]
    assert market["rate_unit"] == "frames/s" and market["kind"] == "camera"
    assert market["health"] in ("ok", "stale")  # stale once the test ran 15 s past the frame
    assert o["unrouted_dead_letters"] == 1
    today = o["cases_today"]
    assert today["total"] == 3
    assert today["states"] == ["opened", "evidence_complete"]
    assert today["by_rule"] == [
        {"rule_id": "cross-door-trading", "total": 2,
         "by_state": {"opened": 1, "evidence_complete": 1}},
        {"rule_id": "fire-lane-parking", "total": 1, "by_state": {"opened": 1}},
    ]  # fmt: skip
    # dead letters are counted once: asking again adds nothing
    again = {d["id"]: d for d in client.get("/api/v1/overview").json()["devices"]}
    assert again[GPS]["dead_letters"] == 2


def test_pages_render_for_a_viewer(site) -> None:
    client = site["client"]
    live = client.get("/live")
    assert live.status_code == 200
    assert 'data-camera="cam-market-01"' in live.text and "no-parking-kerb" in live.text
    overview = client.get("/")
    assert overview.status_code == 200 and 'id="overview-data"' in overview.text
    assert GPS in overview.text


def test_device_health_of_a_camera_follows_its_newest_frame(site) -> None:
    pipeline, config, camera = site["pipeline"], site["config"], site["camera"]
    ts = camera.live.ts
    fresh, _ = device_statuses(pipeline, config, ts + timedelta(seconds=1))
    old, _ = device_statuses(pipeline, config, ts + timedelta(seconds=60))
    assert {d.id: d.health for d in fresh}[CAMERA] == "ok"
    assert {d.id: d.health for d in old}[CAMERA] == "stale"
    assert {d.id: d.health for d in old}["drone-01"] in ("silent", "off")


def test_without_a_pipeline_live_data_is_503_and_the_overview_says_so(tmp_path) -> None:
    config = market_config(tmp_path)
    server = serve_console(config, tmp_path / "console")
    server.ctx.users.add("vera", "viewer", PASSWORD)
    host, port = server.address
    try:
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
            client.post("/login", data={"name": "vera", "password": PASSWORD})
            for path in ("/api/v1/cameras", f"/api/v1/cameras/{CAMERA}/live.jpg"):
                response = client.get(path)
                assert response.status_code == 503
                assert "no pipeline is running" in response.json()["detail"]
            o = client.get("/api/v1/overview").json()
            assert o["running"] is False and o["cases_today"]["total"] == 0
            assert {d["health"] for d in o["devices"]} == {"off"}
            assert "no pipeline is running" in client.get("/live").text
    finally:
        server.stop()


# ---- units ---------------------------------------------------------------------------------


def test_local_midnight_is_in_the_sites_timezone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)  # 01:00 on 2 March in Shanghai
    assert local_midnight(shanghai, now) == datetime(2026, 3, 2, tzinfo=shanghai)
    assert local_midnight(ZoneInfo("UTC"), now) == datetime(2026, 3, 1, tzinfo=UTC)


def test_cases_since_groups_by_rule_and_state(tmp_path) -> None:
    cases = CaseStore(tmp_path / "cases.sqlite")
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    for n in range(3):
        cases.open(make_violation(start + timedelta(minutes=n), n))
    today = cases_since(cases, start + timedelta(minutes=1))
    assert today.total == 2 and today.by_rule[0].by_state == {"opened": 2}


def test_rates_come_from_samples_over_the_last_seconds() -> None:
    rates = Rates(window_s=5.0)
    assert rates.sample(100.0, {"n": 0}) == (0.0, {})
    assert rates.sample(100.3, {"n": 3}) == (0.0, {})  # too short a span
    span, delta = rates.sample(102.0, {"n": 20})
    assert span == pytest.approx(2.0) and delta == {"n": 20}
    span, delta = rates.sample(110.0, {"n": 100})
    assert span == pytest.approx(8.0) and delta == {"n": 80}  # from the newest sample ≥ 5 s old


def test_camera_figures_are_frames_and_detector_ms_per_analysed_frame(site) -> None:
    camera = site["camera"]
    stats = camera.stats
    base = (stats.frames, stats.analysed, stats.detect_ms)
    later = time.monotonic() + 100  # past every sample the other tests took
    try:
        camera_figures(camera, now=later)
        stats.frames, stats.analysed, stats.detect_ms = base[0] + 20, base[1] + 10, base[2] + 500
        figures = camera_figures(camera, now=later + 2)
        assert figures.fps == pytest.approx(5.0)
        assert figures.read_fps == pytest.approx(10.0)
        assert figures.detect_ms == pytest.approx(50.0)
    finally:
        stats.frames, stats.analysed, stats.detect_ms = base


def _view(image: np.ndarray, scale: float = 1.0) -> LiveView:
    s = scale
    zone = Zone(
        id="no-parking-a",
        kind=ZoneKind.NO_PARKING,
        polygon=[[20 * s, 20 * s], [120 * s, 20 * s], [120 * s, 100 * s], [20 * s, 100 * s]],
    )
    return LiveView(
        device_id="cam-x",
        ts=datetime(2026, 3, 2, tzinfo=UTC),
        index=7,
        image=image,
        boxes=(LiveBox((150 * s, 60 * s, 250 * s, 180 * s), "car", "t3", 75.0, ()),),
        motion=((10 * s, 150 * s, 60 * s, 190 * s),),
        left_regions=((260 * s, 120 * s, 290 * s, 190 * s),),
        zones=(zone,),
        detect_ms=12.0,
        full=True,
    )


def _near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(colour)) <= tolerance))


def test_annotation_draws_zones_boxes_and_regions_where_they_are() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    view = _view(image)
    out = draw(view)
    assert out.shape == image.shape and not image.any()  # the shared frame is untouched
    red = zone_colour("no_parking")
    assert _near(out[100, 70], red)  # the zone's bottom edge
    assert _near(out[60, 120], red)  # its right edge
    inside = out[70, 70].astype(int)  # tinted, not painted
    assert 0 < inside.sum() < sum(red) // 3
    assert _near(out[120, 150], TRACK) and _near(out[180, 200], TRACK)  # the car's box
    assert _near(out[160, 290], LEFT)  # the left-object region's right edge
    assert _near(out[170, 10], MOTION)  # the motion region's left edge
    assert not out[140, 100].any()  # nothing drawn where nothing is
    label = out[40:60, 150:250]  # "car t3 1m15s" on a green tag above the box
    assert (np.abs(label.astype(int) - np.array(TRACK)).sum(axis=2) < 40).mean() > 0.3


def test_annotation_of_a_wide_frame_is_scaled_down_with_its_marks() -> None:
    view = _view(np.zeros((500, 2560, 3), np.uint8), scale=4.0)  # marks at 4× the small one's
    jpeg = annotate_jpeg(view, max_width=1280)
    out = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == (250, 1280, 3)
    assert _near(out[200, 140], zone_colour("no_parking"), 60)  # bottom edge: 100 × 4 / 2
    assert _near(out[200, 300], TRACK, 60)  # the car's left edge: 150 × 4 / 2
