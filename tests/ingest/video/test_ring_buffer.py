from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from ingest.frames import Frame
from ingest.video.ring import FrameRing

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def frame(i: int, fps: float = 10.0) -> Frame:
    image = np.full((120, 160, 3), i % 256, np.uint8)
    return Frame("cam", i, T0 + timedelta(seconds=i / fps), image)


def test_keeps_only_the_window_and_returns_a_time_range() -> None:
    ring = FrameRing(seconds=2.0)
    for i in range(100):
        ring.add(frame(i))
    assert len(ring) == 21  # 2 s at 10 fps, both ends included
    picked = ring.between(T0 + timedelta(seconds=9.0), T0 + timedelta(seconds=9.5))
    assert [f.index for f in picked] == [90, 91, 92, 93, 94, 95]
    assert ring.between(T0, T0 + timedelta(seconds=5)) == []
    assert ring.bytes == sum(len(f.jpeg) for f in ring.between(T0, T0 + timedelta(days=1)))


def test_frames_are_jpeg_that_decode_back_to_the_image() -> None:
    ring = FrameRing(seconds=1.0, quality=95)
    encoded = ring.add(frame(77))
    assert (encoded.width, encoded.height) == (160, 120)
    image = cv2.imdecode(np.frombuffer(encoded.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (120, 160, 3)
    assert abs(int(image.mean()) - 77) <= 2
    assert len(encoded.jpeg) < 120 * 160 * 3 / 10


def test_a_clock_going_back_starts_afresh() -> None:
    ring = FrameRing(seconds=10.0)
    for i in range(20):
        ring.add(frame(i))
    ring.add(Frame("cam", 20, T0 - timedelta(seconds=60), np.zeros((8, 8, 3), np.uint8)))
    assert len(ring) == 1
