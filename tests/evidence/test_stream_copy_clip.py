"""Evidence clips cut by stream copy, as cameras deliver: H.264 over RTSP from GStreamer's RTSP
server on loopback, read by the real `VideoSource` into a `PacketRing`, a violation packaged by
the real builder, the clip checked with ffprobe. Also a camera cut mid-clip."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evidence.builder import EvidenceBuilder
from evidence.keys import Signer
from evidence.verify import verify_chain
from ingest.frames import EncodedFrame
from ingest.video.packetring import PacketClip, PacketRing
from ingest.video.sources import VideoSource
from tests import rtspkit
from tests.browserkit import browser, chrome_paths, wait_js  # noqa: F401 (fixtures)
from tests.evidence.evidence_support import REPO, make_violation, site_config

H264 = REPO / "var" / "footage" / "vtest-h264.mp4"
GOP_S = 2.0
"""The footage's keyframe interval (`make footage`)."""


class Camera:
    """The RTSP camera's packets as the camera pipeline keeps them (the builder's provider)."""

    def __init__(self, url: str) -> None:
        self.ring = PacketRing(seconds=8.0)
        self.source = VideoSource("cam-1", url, on_packet=self.ring.add, min_delay_s=0.2)

    def frames_between(self, device_id: str, t0: datetime, t1: datetime) -> list[EncodedFrame]:
        return []

    def clip_between(self, device_id: str, t0: datetime, t1: datetime) -> PacketClip | None:
        return self.ring.between(t0, t1) if device_id == "cam-1" else None

    def seconds(self) -> float:
        return self.ring.seconds

    def wait(self, what: str, ok, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ok():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} within {timeout_s} s: {self.source.stats}")
            self.source.read(0.2)  # the consumer takes frames, as the camera worker does


@pytest.fixture(scope="module")
def rtsp_footage() -> Path:
    why = rtspkit.unavailable()
    if why is not None:
        pytest.skip(why)
    if not H264.is_file():
        pytest.fail(f"{H264} is missing: run `make footage`")
    return H264


@pytest.fixture
def camera(rtsp_footage: Path) -> Iterator[tuple[rtspkit.RtspCamera, Camera]]:
    server = rtspkit.RtspCamera(rtsp_footage).start()
    cam = Camera(server.url)
    cam.source.start()
    try:
        yield server, cam
    finally:
        cam.source.stop()
        server.__exit__()


def builder_for(tmp_path: Path, cam: Camera) -> EvidenceBuilder:
    signer = Signer.load_or_create(tmp_path / "key.pem")
    return EvidenceBuilder(site_config(tmp_path), signer, cam, None)


def probe(ffprobe: str, clip: Path) -> tuple[dict, list[dict]]:
    """The stream's facts and every frame's (key flag, time), decoding the whole clip."""
    out = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v", "-show_entries",
         "stream=codec_name,profile,pix_fmt,width,height:format=format_name,duration"
         ":frame=key_frame,pts_time", "-of", "json", str(clip)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = json.loads(out.stdout)
    assert not out.stderr.strip(), out.stderr  # decodes cleanly
    return {**found["streams"][0], **found["format"]}, found["frames"]


@dataclass
class Packaged:
    package: Path
    t0: datetime
    t1: datetime
    ring_seconds: float


@pytest.fixture(scope="module")
def rtsp_package(rtsp_footage: Path, tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    """A violation 2..4 s into the RTSP camera's stream (pre-roll 1.5 s, post-roll 1 s),
    packaged once the post-roll is in while the camera streams on."""
    tmp_path = tmp_path_factory.mktemp("rtsp-package")
    with rtspkit.RtspCamera(rtsp_footage) as server:
        cam = Camera(server.url)
        cam.source.start()
        try:
            cam.wait("the first packet", lambda: cam.ring.latest() is not None)
            began = cam.ring.latest().ts
            violation = make_violation(
                began - timedelta(seconds=3), dwell_s=2.0, pre_s=1.5, post_s=1.0
            )
            t0 = violation.window_start - timedelta(seconds=1.5)
            t1 = violation.window_end + timedelta(seconds=1.0)
            cam.wait("the post-roll", lambda: cam.ring.latest().ts >= t1)
            package = builder_for(tmp_path, cam).build(violation)
            cam.wait(
                "8 s more of stream", lambda: cam.ring.latest().ts >= t1 + timedelta(seconds=8)
            )
            return Packaged(package, t0, t1, cam.seconds())
        finally:
            cam.source.stop()


def test_rtsp_h264_camera_violation_to_package_by_stream_copy(
    rtsp_package: Packaged, ffprobe: str
) -> None:
    package, t0, t1 = rtsp_package.package, rtsp_package.t0, rtsp_package.t1
    report = verify_chain(package.parent.parent)
    assert report.ok and report.packages == 1, report.findings
    manifest = json.loads((package / "manifest.json").read_bytes())
    facts = manifest["media"]["cam-1"]["clip"]
    assert facts["stream_copy"] and facts["codec"] == "h264"
    stream, frames = probe(ffprobe, package / "media/cam-1/clip.mp4")
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 768, 576)
    assert stream["format_name"].startswith("mov,mp4")
    assert frames[0]["key_frame"] == 1 and float(frames[0]["pts_time"]) == 0.0
    # from the keyframe before the pre-roll to the end of the post-roll
    first = datetime.fromisoformat(facts["first_frame"]["utc"])
    last = datetime.fromisoformat(facts["last_frame"]["utc"])
    assert t0 - timedelta(seconds=GOP_S) <= first <= t0
    assert t1 - timedelta(seconds=0.1) <= last <= t1
    assert abs(float(stream["duration"]) - (last - first).total_seconds()) < 0.25
    assert len(frames) == facts["frames"]
    # stills: decoded from the packets at their moments, JPEG-encoded once
    snapshots = manifest["media"]["cam-1"]["snapshots"]
    assert set(snapshots) == {"first_seen", "confirmed", "latest"}
    for name in snapshots:
        assert (package / f"media/cam-1/{name}.raw.jpg").read_bytes()[:2] == b"\xff\xd8"
    # the ring stays bounded while the camera streams on: its window plus one GOP
    assert 8.0 <= rtsp_package.ring_seconds <= 8.0 + GOP_S + 0.2


def test_stream_copied_clip_plays_in_the_browser(
    rtsp_package: Packaged, request: pytest.FixtureRequest
) -> None:
    """The console's browser (Debian's Chromium) plays the clip cut from the RTSP packets."""
    driver = request.getfixturevalue("browser")
    folder = rtsp_package.package / "media/cam-1"
    (folder.parent.parent.parent / "play.html").write_text(
        '<video class="clip" src="PKG/media/cam-1/clip.mp4" muted></video>'.replace(
            "PKG", rtsp_package.package.name
        )
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder.parent.parent.parent))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            driver.get(f"http://127.0.0.1:{server.server_address[1]}/play.html")
            video = "document.querySelector('video.clip')"
            wait_js(driver, f"{video}.readyState >= 2", 30, "the clip to load")
            assert driver.execute_script(f"return {video}.videoWidth;") == 768
            driver.execute_script(f"{video}.play();")
            wait_js(driver, f"{video}.currentTime > 0.5", 30, "the clip to play")
            assert driver.execute_script(f"return {video}.error;") is None
        finally:
            server.shutdown()


def test_camera_cut_mid_clip_still_yields_a_verifiable_package(
    tmp_path: Path, camera, ffprobe: str
) -> None:
    server, cam = camera
    cam.wait("the first packet", lambda: cam.ring.latest() is not None)
    began = cam.ring.latest().ts
    violation = make_violation(began - timedelta(seconds=4), dwell_s=3.0, pre_s=1.0, post_s=2.0)
    # the window is 1..4 s after the first packet: the camera dies 2.5 s in
    cam.wait("2.5 s of stream", lambda: cam.ring.latest().ts >= began + timedelta(seconds=2.5))
    server.kill()
    cam.wait("the loss to be noticed", lambda: cam.source.stats.failures >= 1)
    received = cam.ring.latest()

    package = builder_for(tmp_path, cam).build(violation)

    report = verify_chain(package.parent.parent)
    assert report.ok, report.findings
    manifest = json.loads((package / "manifest.json").read_bytes())
    facts = manifest["media"]["cam-1"]["clip"]
    _, frames = probe(ffprobe, package / "media/cam-1/clip.mp4")
    assert frames[0]["key_frame"] == 1
    assert datetime.fromisoformat(facts["last_frame"]["utc"]) == received.ts  # all received
    assert len(frames) == facts["frames"] > 20
    assert set(manifest["media"]["cam-1"]["snapshots"]) == {"first_seen", "confirmed", "latest"}
