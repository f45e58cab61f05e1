"""Video frames as ingestion emits them.

`Frame` carries decoded pixels for the detectors; `EncodedFrame` is the compact JPEG form kept in
each camera's ring buffer for the evidence pre-roll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Frame:
    device_id: str
    index: int
    """Position in the camera's stream since the source was opened (monotonic per source)."""
    ts: datetime
    """Capture time (UTC): container timestamp for files, arrival time for live streams."""
    image: Any = field(repr=False)
    """BGR numpy array, height × width × 3."""

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.image.shape[:2]
        return width, height


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    device_id: str
    index: int
    ts: datetime
    width: int
    height: int
    jpeg: bytes = field(repr=False)
