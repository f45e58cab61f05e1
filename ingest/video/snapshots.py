"""JPEG snapshots that arrived over MQTT (ingest.readings.Snapshot) as Frames."""

from __future__ import annotations

import cv2
import numpy as np

from ingest.frames import Frame
from ingest.readings import Reading, Snapshot


class SnapshotError(ValueError):
    """A snapshot whose bytes do not decode to the image its reading announced."""


def snapshot_to_frame(reading: Reading, index: int) -> Frame:
    """Decode a snapshot reading; `index` is the camera's running frame counter."""
    payload = reading.payload
    if not isinstance(payload, Snapshot):
        raise SnapshotError(f"{reading.device_id}: reading {reading.key} is not a snapshot")
    image = cv2.imdecode(np.frombuffer(payload.jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SnapshotError(f"{reading.device_id}: snapshot {reading.key} is not a decodable JPEG")
    height, width = image.shape[:2]
    if (width, height) != (payload.width, payload.height):
        raise SnapshotError(
            f"{reading.device_id}: snapshot {reading.key} decodes to {width}x{height}, "
            f"its header said {payload.width}x{payload.height}"
        )
    return Frame(reading.device_id, index, reading.event_ts, image)
