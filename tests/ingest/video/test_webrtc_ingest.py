"""A real aiortc peer sends vtest.avi to the WHIP endpoint over loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from ingest.frames import Frame
from ingest.video.webrtc import WhipServer

TOKEN = "test-token-0123456789"


class FileTrack(VideoStreamTrack):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.container = av.open(str(path))
        self.frames = self.container.decode(video=0)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = next(self.frames).reformat(format="yuv420p")
        frame.pts, frame.time_base = pts, time_base or Fraction(1, 90000)
        return frame


async def publish(url: str, token: str, path: Path, seconds: float) -> tuple[int, str]:
    pc = RTCPeerConnection()
    pc.addTrack(FileTrack(path))
    await pc.setLocalDescription(await pc.createOffer())
    request = urllib.request.Request(
        url,
        data=pc.localDescription.sdp.encode(),
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    loop = asyncio.get_running_loop()
    try:
        response = await loop.run_in_executor(
            None, lambda: urllib.request.urlopen(request, timeout=10)
        )
    except urllib.error.HTTPError as exc:
        await pc.close()
        return exc.code, ""
    answer = response.read().decode()
    location = response.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.sleep(seconds)
    await pc.close()
    return response.status, location


@pytest.fixture
def server():
    frames: list[Frame] = []
    lock = threading.Lock()

    def on_frame(frame: Frame) -> None:
        with lock:
            frames.append(frame)

    whip = WhipServer(TOKEN, ["drone-01"], on_frame)
    whip.start()
    try:
        yield whip, frames
    finally:
        whip.stop()


def test_a_drone_streams_video_over_whip(server, vtest: Path) -> None:
    whip, frames = server
    assert whip.host == "127.0.0.1" and whip.port > 0
    status, location = asyncio.run(publish(f"{whip.url}/drone-01", TOKEN, vtest, 4.0))
    assert status == 201 and location.startswith("/whip/drone-01/")
    deadline = time.monotonic() + 5
    while len(frames) < 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(frames) >= 10
    assert {f.device_id for f in frames} == {"drone-01"}
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[-1].size == (768, 576)
    assert frames[-1].image.mean() > 20  # real pixels, not a black placeholder


def test_wrong_token_and_unknown_device_are_refused(server, vtest: Path) -> None:
    whip, frames = server
    assert asyncio.run(publish(f"{whip.url}/drone-01", "wrong-token-xxxxxxxx", vtest, 0))[0] == 401
    assert asyncio.run(publish(f"{whip.url}/drone-99", TOKEN, vtest, 0))[0] == 404
    request = urllib.request.Request(
        f"{whip.url}/drone-01",
        data=b"v=0 nonsense",
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert whip.stats["unauthorised"] == 1 and whip.stats["unknown_device"] == 1
    assert whip.stats["bad_offer"] == 1 and frames == []


def test_short_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        WhipServer("short", ["d"], lambda f: None)


def test_stop_after_a_failed_start_returns_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        whip = WhipServer(TOKEN, ["drone-01"], lambda f: None, port=taken.getsockname()[1])
        with pytest.raises(OSError):
            whip.start()
    started = time.monotonic()
    whip.stop()  # used to wait 10 s on a loop that never ran, then raise a timeout
    assert time.monotonic() - started < 2
