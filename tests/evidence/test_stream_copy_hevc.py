"""H.265 cameras too: the footage encoded to HEVC (Debian's ffmpeg, libx265), read by the real
`VideoSource` into a `PacketRing`, cut by stream copy; the clip is HEVC tagged `hvc1`, starts
on a keyframe and decodes cleanly; a still decodes from the packets."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evidence.clips import stills, write_copy_clip
from ingest.video.packetring import PacketRing
from ingest.video.sources import VideoSource
from tests.evidence.evidence_support import REPO

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
H264 = REPO / "var" / "footage" / "vtest-h264.mp4"
X265 = "keyint=20:min-keyint=20:bframes=0:log-level=error"
"""A keyframe every 2 s, no B-frames: as the H.264 footage."""


@pytest.fixture(scope="module")
def hevc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None or not H264.is_file():
        pytest.fail("ffmpeg or var/footage/vtest-h264.mp4 missing: `make system-deps footage`")
    path = tmp_path_factory.mktemp("hevc") / "cam.mp4"
    subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(H264), "-t", "5", "-an", "-c:v", "libx265",
         "-preset", "ultrafast", "-x265-params", X265, "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def test_h265_camera_clip_by_stream_copy(hevc: Path, tmp_path: Path, ffprobe: str) -> None:
    ring = PacketRing(seconds=60.0)
    source = VideoSource(
        "cam-1", str(hevc), realtime=False, clock=lambda: START, on_packet=ring.add
    )
    source.start()
    try:
        while source.read(10) is not None:
            pass
    finally:
        source.stop()
    assert len(ring) == 50, source.stats
    clip = ring.between(START + timedelta(seconds=2.5), START + timedelta(seconds=4.5))
    assert clip is not None and clip.header.codec == "hevc"
    assert clip.start == START + timedelta(seconds=2.0)  # the keyframe before the pre-roll

    facts = write_copy_clip(clip, tmp_path / "clip.mp4")

    out = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v", "-show_entries",
         "stream=codec_name,codec_tag_string:frame=key_frame", "-of", "json",
         str(tmp_path / "clip.mp4")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert not out.stderr.strip(), out.stderr
    found = json.loads(out.stdout)
    assert (found["streams"][0]["codec_name"], found["streams"][0]["codec_tag_string"]) == (
        "hevc",
        "hvc1",
    )
    assert found["frames"][0]["key_frame"] == 1
    assert len(found["frames"]) == facts["frames"] == 26
    (still,) = stills(clip, [START + timedelta(seconds=3.3)])
    assert still.ts == START + timedelta(seconds=3.3) and still.jpeg[:2] == b"\xff\xd8"
