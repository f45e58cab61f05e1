"""The zone editor's API on a real uvicorn server, over a real devices.yaml on disk and a real
CameraPipeline (the market camera's model on vtest.avi frames): what a save validates, writes,
applies and refuses."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from ingest.config import load_config
from ingest.frames import Frame
from ingest.readings import GpsFix, Reading, Stream, TimeFlag
from streetwatch.demo import demo_rules
from tests.browserkit import shared_model_present
from tests.conftest import REPO, market_site_text
from tests.consolekit import serve_console

pytestmark = pytest.mark.usefixtures("keep_root_logging")

PASSWORD = "zones-test-pass-1"
CAMERA = "cam-market-01"
LEAD = "# the operator's own notes: kept by the zone editor\n"
VTEST = REPO / "var" / "footage" / "vtest.avi"
DRAWN = {"id": "test-drawn", "kind": "sidewalk", "polygon": [[40, 20], [300, 20], [300, 200]]}


def site_text() -> str:
    text = market_site_text().replace("var/footage/vtest.avi", str(VTEST))
    return LEAD + text


def session(base: str, name: str) -> tuple[httpx.Client, str]:
    """Logged in as `name`, with the CSRF token of the zones page."""
    client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
    assert client.post("/login", data={"name": name, "password": PASSWORD}).status_code == 303
    token = re.search(r'name="csrf-token" content="([^"]*)"', client.get("/zones").text)
    assert token is not None
    return client, token.group(1)


def vtest_frames(count: int) -> list[Frame]:
    video = cv2.VideoCapture(str(VTEST))
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    frames = []
    for index in range(count):
        ok, image = video.read()
        assert ok
        frames.append(Frame(CAMERA, index, t0 + timedelta(seconds=index), image))
    video.release()
    return frames


@dataclass(eq=False)
class Box:
    """What the console sees of a running pipeline: its cameras (one real CameraPipeline)."""

    cameras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Site:
    path: Path
    server: Any
    camera: Any
    frames: list[Frame]
    rules: Path

    @property
    def url(self) -> str:
        host, port = self.server.address
        return f"http://{host}:{port}"

    @property
    def ctx(self) -> Any:
        return self.server.ctx

    def session(self, name: str):
        return session(self.url, name)

    def version(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    if not shared_model_present() or not VTEST.exists():
        pytest.skip("the shared assets' model or vtest.avi is absent: see ../shared")
    from detectors.camera import CameraPipeline

    path = tmp_path / "site" / "devices.yaml"
    path.parent.mkdir()
    path.write_text(site_text(), encoding="utf-8")
    config = load_config(path)
    device = config.device(CAMERA)
    assert device is not None
    camera = CameraPipeline(device, config, lambda obs: None)
    rules = demo_rules(tmp_path)
    server = serve_console(
        config,
        tmp_path / "console",
        config_path=path,
        rules_dir=rules,
        pipeline=Box({CAMERA: camera}),
    )
    server.ctx.users.add("otto", "operator", PASSWORD)
    server.ctx.users.add("vera", "viewer", PASSWORD)
    try:
        yield Site(path, server, camera, vtest_frames(3), rules)
    finally:
        server.stop()


def zones_of(site: Site) -> list[dict]:
    client, _ = site.session("vera")
    body = client.get(f"/api/v1/cameras/{CAMERA}/zones").json()
    return body["zones"]


def test_zones_and_frame_of_a_running_camera(site: Site) -> None:
    client, _ = site.session("vera")
    response = client.get(f"/api/v1/cameras/{CAMERA}/frame.jpg")
    assert response.status_code == 503, "no frame before the camera analysed one"
    site.camera.process(site.frames[0])
    response = client.get(f"/api/v1/cameras/{CAMERA}/zones")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == site.version()
    assert response.headers["etag"] == f'"{site.version()}"'
    assert body["frame"] == {"width": 768, "height": 576}
    assert [z["id"] for z in body["zones"]] == [
        "shopfront-wang",
        "sidewalk-east",
        "no-parking-centre",
        "no-parking-kerb",
    ]
    assert body["zones"][0]["merchant"] == "m-0001"
    assert body["live_zones"] == [z["id"] for z in body["zones"]]
    response = client.get(f"/api/v1/cameras/{CAMERA}/frame.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == site.frames[0].image.shape
    difference = np.abs(image.astype(int) - site.frames[0].image.astype(int)).mean()
    assert difference < 4, "the frame itself, not a placeholder or an annotated copy"


def test_save_writes_the_file_keeping_the_rest_and_applies_it_live(site: Site) -> None:
    before = site.path.read_text(encoding="utf-8")
    site.camera.process(site.frames[0])
    client, csrf = site.session("otto")
    zones = [*zones_of(site), DRAWN]
    response = client.put(
        f"/api/v1/cameras/{CAMERA}/zones",
        json={"zones": zones, "version": site.version()},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["applied"] is True and body["version"] == site.version()
    after = site.path.read_text(encoding="utf-8")
    assert after.startswith(LEAD)
    added = (
        "      - id: test-drawn\n"
        "        kind: sidewalk\n"
        "        polygon: [[40, 20], [300, 20], [300, 200]]\n"
    )
    cut = before.index("\n\n  - id: drone-01") + 1  # after the last zone, before the blank line
    assert after == before[:cut] + added + before[cut:]
    assert load_config(site.path).device(CAMERA).zones[-1].id == "test-drawn"
    assert site.ctx.config.device(CAMERA).zones[-1].id == "test-drawn"
    site.camera.process(site.frames[1])  # the camera takes new zones before its next frame
    assert site.camera.live.zones[-1].id == "test-drawn"
    assert [z["id"] for z in zones_of(site)][-1] == "test-drawn"
    audit = [e for e in site.ctx.cases.events() if e.event == "audit"]
    assert audit[-1].data["actor"] == "otto" and audit[-1].data["target"] == f"zones/{CAMERA}"
    assert len(audit[-1].data["before"]) == 4 and audit[-1].data["after"][-1]["id"] == "test-drawn"
    # and back: the file is byte for byte what it was
    response = client.put(
        f"/api/v1/cameras/{CAMERA}/zones",
        json={"zones": zones[:-1]},
        headers={"X-CSRF-Token": csrf, "If-Match": f'"{site.version()}"'},
    )
    assert response.status_code == 200, response.text
    assert site.path.read_text(encoding="utf-8") == before


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (
            {
                "id": "bow-tie",
                "kind": "sidewalk",
                "polygon": [[0, 0], [100, 100], [100, 0], [0, 100]],
            },
            "devices[0].zones[4].polygon: zone 'bow-tie' polygon is not a valid polygon",
        ),
        (
            {"id": "shop", "kind": "shopfront", "polygon": [[0, 0], [100, 0], [100, 100]]},
            "a shopfront zone names its merchant",
        ),
        (
            {
                "id": "shop",
                "kind": "shopfront",
                "merchant": "m-9",
                "polygon": [[0, 0], [9, 0], [9, 9]],
            },
            "devices[0].zones[4].merchant: zone shop: merchant 'm-9' is not in merchants",
        ),
        (
            {"id": "../etc", "kind": "sidewalk", "polygon": [[0, 0], [100, 0], [100, 100]]},
            "devices[0].zones[4].id: ids are 1-64 letters",
        ),
        (
            {"id": "no-parking-kerb", "kind": "sidewalk", "polygon": [[0, 0], [9, 0], [9, 9]]},
            "devices[0].zones[4].id: zone id 'no-parking-kerb' appears twice",
        ),
        (
            {"id": "neg", "kind": "sidewalk", "polygon": [[-5, 0], [100, 0], [100, 100]]},
            "is not a pixel [x, y] of the image",
        ),
        (
            {"id": "k", "kind": "bus_lane", "polygon": [[0, 0], [100, 0], [100, 100]]},
            "devices[0].zones[4].kind: Input should be",
        ),
    ],
)
def test_a_save_the_check_refuses_names_the_line_and_changes_nothing(
    site: Site, zone: dict, expected: str
) -> None:
    before = site.path.read_bytes()
    client, csrf = site.session("otto")
    response = client.put(
        f"/api/v1/cameras/{CAMERA}/zones",
        json={"zones": [*zones_of(site), zone], "version": site.version()},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{site.path}:") for p in problems), problems
    assert site.path.read_bytes() == before
    assert not [p for p in site.path.parent.iterdir() if p.name != "devices.yaml"], "temp left"
    assert [z.id for z in site.ctx.config.device(CAMERA).zones][-1] == "no-parking-kerb"


def test_rules_that_would_never_fire_refuse_the_save(site: Site) -> None:
    """As `streetwatch check -r`: the running rules must still fit the zones."""
    client, csrf = site.session("otto")
    zones = [z for z in zones_of(site) if z["kind"] != "shopfront"]
    response = client.put(
        f"/api/v1/cameras/{CAMERA}/zones",
        json={"zones": zones, "version": site.version()},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert any(p.startswith(str(site.rules / "cross-door-trading.yaml")) for p in problems)
    assert any("shopfront" in p for p in problems)


def test_stale_or_missing_versions_are_refused_and_one_of_two_racing_saves_wins(
    site: Site,
) -> None:
    client, csrf = site.session("otto")
    zones = zones_of(site)
    url = f"/api/v1/cameras/{CAMERA}/zones"
    headers = {"X-CSRF-Token": csrf}
    response = client.put(url, json={"zones": zones}, headers=headers)
    assert response.status_code == 428
    response = client.put(url, json={"zones": zones, "version": "0" * 64}, headers=headers)
    assert response.status_code == 409 and "changed since" in response.json()["detail"]
    base = site.version()
    results: list[int] = []

    def save(extra: dict) -> None:
        own, token = site.session("otto")
        body = {"zones": [*zones, extra], "version": base}
        results.append(own.put(url, json=body, headers={"X-CSRF-Token": token}).status_code)

    first = {**DRAWN, "id": "first"}
    second = {**DRAWN, "id": "second"}
    threads = [threading.Thread(target=save, args=(z,)) for z in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [200, 409]
    ids = [z.id for z in load_config(site.path).device(CAMERA).zones]
    assert len(ids) == 5 and ids[-1] in ("first", "second")


def test_roles_csrf_and_device_ids(site: Site) -> None:
    url = f"/api/v1/cameras/{CAMERA}/zones"
    viewer, vera_csrf = site.session("vera")
    body = {"zones": [DRAWN], "version": site.version()}
    response = viewer.put(url, json=body, headers={"X-CSRF-Token": vera_csrf})
    assert response.status_code == 403 and "operator role needed" in response.text
    client, csrf = site.session("otto")
    assert client.put(url, json=body).status_code == 403  # no CSRF token
    assert httpx.get(f"{site.url}{url}").status_code == 401
    for device in ("gps-muck-07", "nope", "..%2F..%2Fetc%2Fpasswd", "cam-market-01.."):
        assert client.get(f"/api/v1/cameras/{device}/zones").status_code == 404, device
        assert client.get(f"/api/v1/cameras/{device}/frame.jpg").status_code == 404, device
        response = client.put(
            f"/api/v1/cameras/{device}/zones", json=body, headers={"X-CSRF-Token": csrf}
        )
        assert response.status_code == 404, device
    response = client.put(f"/api/v1/geozones/{CAMERA}", json=body, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 404
    too_many = {"zones": [DRAWN] * 201, "version": site.version()}
    assert client.put(url, json=too_many, headers={"X-CSRF-Token": csrf}).status_code == 422
    assert site.path.read_text(encoding="utf-8") == site_text()
    paths = client.get("/api/openapi.json").json()["paths"]
    assert {"get", "put"} <= set(paths["/api/v1/cameras/{device_id}/zones"])
    assert "/api/v1/geozones" in paths and "/zones" not in paths


def test_geographic_zones_go_to_the_running_gps_detector(tmp_path: Path) -> None:
    """A GPS device's geofence saved through the API is in force for its next fix, in a real
    (not started) Pipeline: the fix inside the new zone enters it."""
    from streetwatch.pipeline import Pipeline, PipelineOptions

    path = tmp_path / "devices.yaml"
    path.write_text(site_text(), encoding="utf-8")
    config = load_config(path)
    rules = demo_rules(tmp_path)
    pipeline = Pipeline(config, PipelineOptions(rules_dir=rules, cameras=False, sink=False))
    server = serve_console(
        config, tmp_path / "console", config_path=path, rules_dir=rules, pipeline=pipeline
    )
    server.ctx.users.add("otto", "operator", PASSWORD)
    host, port = server.address
    try:
        client, csrf = session(f"http://{host}:{port}", "otto")
        body = client.get("/api/v1/geozones").json()
        devices = {d["device_id"]: d for d in body["devices"]}
        assert set(devices) == {"drone-01", "gps-patrol-01", "gps-muck-07", "gps-muck-08"}
        assert [z["id"] for z in devices["gps-muck-07"]["zones"]] == ["school-zone"]
        bays = {p["label"] for p in body["points"] if p["what"] == "bay"}
        assert bays == {"fire-lane-1", "fire-lane-2", "fire-lane-3"}
        assert {s["what"] for s in body["shapes"]} == {"shopfront", "route"}
        fix = _fix("gps-patrol-01", 121.43705, 31.19535)
        assert not [o for o in pipeline.sensors.process(fix) if o.zone_id]
        depot = {
            "id": "depot",
            "kind": "restricted",
            "polygon": [[121.4370, 31.1953], [121.4371, 31.1953], [121.4371, 31.1954]],
        }
        response = client.put(
            "/api/v1/geozones/gps-patrol-01",
            json={"zones": [depot], "version": body["version"]},
            headers={"X-CSRF-Token": csrf},
        )
        assert response.status_code == 200, response.text
        assert response.json()["applied"] is True
        assert "polygon: [[121.437, 31.1953], [121.4371, 31.1953]" in path.read_text()
        assert pipeline.config.device("gps-patrol-01").zones[0].id == "depot"
        assert "depot" not in pipeline.engine._merchants  # the analysis thread takes the edit
        pipeline._analyse_once(0)  # one pass of the analysis loop, as the running thread does
        assert pipeline.engine._merchants.get("depot", "absent") is None
        entered = []
        for seconds in (5, 6, 7):  # a few fixes in a row inside (the fence's inertia)
            fix = _fix("gps-patrol-01", 121.43708, 31.19532, seconds=seconds)
            entered += [o for o in pipeline.sensors.process(fix) if o.zone_id == "depot"]
        assert entered and entered[0].zone_kind == "restricted"
    finally:
        server.stop()
        pipeline.journal.close()


def _fix(device: str, lon: float, lat: float, seconds: int = 0) -> Reading:
    ts = datetime(2026, 12, 1, 8, tzinfo=UTC) + timedelta(seconds=seconds)
    return Reading(
        f"{device}-{seconds}",
        device,
        Stream.GPS,
        ts,
        ts,
        TimeFlag.OK,
        GpsFix(lat=lat, lon=lon, hdop=1.0, sats=9),
    )
