"""A still image as a camera: the same real scene (Debian's dog.jpg) delivered at a frame rate
with sensor noise, through `FileFrames` (synchronous) and `VideoSource` (threaded, paced)."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from ingest.config import load_config
from ingest.video.sources import FileFrames, VideoSource
from ingest.video.still import NOISE_SIGMA, is_still
from streetwatch.preflight import preflight_problems
from tests.assets import debian_still
from tests.conftest import market_site_text

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def dog() -> Path:
    return debian_still("dog.jpg")


def test_image_streams_are_stills_and_urls_are_not() -> None:
    assert is_still("var/footage/dog.jpg") and is_still("file:///x/Scene.PNG")
    assert not is_still("var/footage/vtest.avi")
    assert not is_still("http://cam.local/snapshot.jpg")
    assert not is_still("rtsp://cam.local/live.jpeg")


def test_file_frames_of_a_still_for_a_duration(dog: Path) -> None:
    frames = FileFrames(dog, "cam", START, fps=4, duration_s=10)
    assert frames.fps == 4.0 and frames.frame_count == 40
    seen = list(frames)
    assert [f.index for f in seen] == list(range(40))
    assert [f.ts for f in seen] == [START + timedelta(seconds=i / 4) for i in range(40)]
    assert {f.size for f in seen} == {(768, 576)}
    image = cv2.imread(str(dog))
    first, second = (f.image.astype(np.int16) - image for f in seen[:2])
    # a sensor's noise: a couple of grey levels around the scene, different every exposure
    assert first.std() == pytest.approx(NOISE_SIGMA, rel=0.1)
    assert abs(first.mean()) < 0.05 and np.abs(first).max() <= 6 * NOISE_SIGMA
    assert not np.array_equal(seen[0].image, seen[1].image)
    assert np.corrcoef(first.ravel(), second.ravel())[0, 1] < 0.05
    again = list(FileFrames(dog, "cam", START, fps=4, frames=3))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, seen, strict=False))


def test_a_still_without_a_limit_is_endless_and_the_default_rate_is_five(dog: Path) -> None:
    frames = FileFrames(dog, "cam", START)
    assert frames.fps == 5.0 and frames.frame_count == 0
    taken = list(itertools.islice(frames, 26))
    assert len(taken) == 26 and taken[-1].ts == START + timedelta(seconds=5)
    assert len(list(FileFrames(dog, "cam", START, frames=7, duration_s=60))) == 7
    quiet = list(FileFrames(dog, "cam", START, frames=2, noise_sigma=0))
    assert np.array_equal(quiet[0].image, quiet[1].image)


def test_missing_and_unreadable_images_are_clear_errors(dog: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cam: still image not found"):
        FileFrames(tmp_path / "nope.jpg", "cam")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="does not recognise the 20-byte file as an image"):
        FileFrames(tmp_path / "broken.jpg", "cam")
    with pytest.raises(ValueError, match="positive frame rate"):
        FileFrames(dog, "cam", fps=float("nan"))


def test_threaded_still_is_paced_and_ends_after_its_duration(dog: Path) -> None:
    buffered = []
    source = VideoSource(
        "cam", str(dog), clock=lambda: START, on_frame=buffered.append, fps=20, duration_s=1.0
    )
    assert source.still and not source.live
    started = time.monotonic()
    source.start()
    try:
        taken = []
        while (frame := source.read(timeout=10)) is not None:
            taken.append(frame)
    finally:
        source.stop()
    elapsed = time.monotonic() - started
    assert source.ended and source.stats.frames == 20 and source.stats.opens == 1
    assert elapsed >= 19 / 20  # paced: frame 19 is due 0.95 s after the first
    assert [f.ts for f in buffered] == [START + timedelta(seconds=i / 20) for i in range(20)]
    assert taken and taken[-1].index == 19 and source.stats.failures == 0


def test_looping_still_runs_on_with_increasing_timestamps_until_stopped(dog: Path) -> None:
    buffered = []
    source = VideoSource(
        "cam",
        str(dog),
        loop=True,
        realtime=False,
        clock=lambda: START,
        on_frame=buffered.append,
        duration_s=0.4,  # loop wins, as for a file: it plays on
    )
    source.start()
    try:
        deadline = time.monotonic() + 60
        while len(buffered) < 12 and time.monotonic() < deadline:
            assert source.read(timeout=10) is not None
    finally:
        source.stop()
    assert len(buffered) >= 12 and not source.ended
    stamps = [f.ts for f in buffered]
    assert stamps == [START + timedelta(seconds=i / 5) for i in range(len(stamps))]
    assert [f.index for f in buffered] == list(range(len(buffered)))


def test_threaded_missing_still_is_a_failure_with_the_reason(tmp_path: Path) -> None:
    source = VideoSource("cam", str(tmp_path / "gone.png"), min_delay_s=60)
    source.start()
    try:
        deadline = time.monotonic() + 30
        while source.stats.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        source.stop()
    assert source.stats.failures == 1 and source.stats.frames == 0
    assert source.stats.last_error == "cannot open: no such file"


def test_check_preflight_takes_an_image_stream_as_a_file(dog: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load(market_site_text())
    camera = next(d for d in doc["devices"] if d["id"] == "cam-market-01")
    camera["detect"]["weights"] = str(tmp_path / "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"weights")
    path = tmp_path / "devices.yaml"
    for stream, expected in ((str(dog), []), ("stills/gone.jpg", ["not found"])):
        camera["stream"] = stream
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        problems = preflight_problems(load_config(path), path)
        assert [p.rsplit(": ", 1)[-1] for p in problems] == expected
        if expected:
            assert f"video file {tmp_path}/stills/gone.jpg" in problems[0]


def test_the_same_limits_bound_a_video_file(vtest: Path) -> None:
    assert len(list(FileFrames(vtest, "cam", START, duration_s=1.5))) == 15
    assert [f.index for f in FileFrames(vtest, "cam", START, frames=3, duration_s=60)] == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot be negative"):
        FileFrames(vtest, "cam", frames=-1)
