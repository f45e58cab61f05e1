"""What a camera saw in its newest analysed frame, for a person to look at (the console's Live
page): the frame itself, the tracked boxes with their dwell, the motion regions, the
left-object regions, and how long the detector took."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ingest.config import Zone

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class LiveBox:
    box: Box
    subject: str
    subject_id: str
    """`t7` for a detector's track, `o3` for a left object, `s2` for a stall."""
    dwell_s: float
    """Seconds since the subject was first seen."""
    zones: tuple[str, ...]
    """Zones it is in now (by its footprint)."""


@dataclass(frozen=True, slots=True)
class LiveView:
    device_id: str
    ts: datetime
    index: int
    image: np.ndarray
    """The analysed frame (BGR), shared with the pipeline: read it, never write it."""
    boxes: tuple[LiveBox, ...]
    motion: tuple[Box, ...]
    """Where the motion gate saw change (the whole frame on a full-frame check)."""
    left_regions: tuple[Box, ...]
    """Candidate and confirmed left-object regions."""
    zones: tuple[Zone, ...]
    detect_ms: float
    """The detector's time on this frame."""
    full: bool
    """This frame had a full-frame check (else only the motion regions were detected)."""
