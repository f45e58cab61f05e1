from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from ingest.readings import Reading, Snapshot, Stream, TimeFlag
from ingest.video.snapshots import SnapshotError, snapshot_to_frame

TS = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def reading(jpeg: bytes, width: int, height: int) -> Reading:
    return Reading(
        key="k1",
        device_id="drone-1",
        stream=Stream.SNAPSHOT,
        device_ts=TS,
        received_ts=TS,
        time_flag=TimeFlag.OK,
        payload=Snapshot(jpeg=jpeg, width=width, height=height),
    )


def test_a_snapshot_becomes_a_frame_at_its_capture_time() -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, 32:] = (0, 0, 255)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    frame = snapshot_to_frame(reading(jpeg.tobytes(), 64, 48), index=7)
    assert (frame.device_id, frame.index, frame.ts, frame.size) == ("drone-1", 7, TS, (64, 48))
    assert frame.image[10, 50, 2] > 200 and frame.image[10, 10, 2] < 50


def test_undecodable_or_mismatched_snapshots_are_refused() -> None:
    with pytest.raises(SnapshotError, match="not a decodable JPEG"):
        snapshot_to_frame(reading(b"\xff\xd8garbage", 64, 48), index=0)
    _, jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(SnapshotError, match="decodes to 64x48"):
        snapshot_to_frame(reading(jpeg.tobytes(), 640, 480), index=0)
