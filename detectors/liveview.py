"""What a camera saw in its newest analysed frame, for a person to look at (the console's Live
page): the frame itself, the tracked boxes with their dwell, the motion regions, the
left-object regions, and how long the detector took."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from ingest.config import Device, Zone
from ingest.frames import Frame

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


def live_view(
    device: Device,
    frame: Frame,
    tracks: Iterable[Any],
    visits: Mapping[tuple[int, str], Any],
    motion: Iterable[Box],
    left_regions: Iterable[Any],
    detect_ms: float,
    full: bool,
    subject_id: Callable[[int], str],
) -> LiveView:
    """The view of one analysed frame: `tracks` (TrackState: box, subject, first seen) with the
    zones their visits are in, the motion regions and the left-object regions (`.box`)."""
    inside: dict[int, list[str]] = {}
    for track_id, zone_id in visits:
        inside.setdefault(track_id, []).append(zone_id)
    boxes = [
        LiveBox(
            tuple(float(v) for v in state.box),  # type: ignore[arg-type]
            state.subject,
            subject_id(state.track_id),
            (frame.ts - state.first_seen).total_seconds(),
            tuple(inside.get(state.track_id, ())),
        )
        for state in tracks
    ]
    return LiveView(
        device.id,
        frame.ts,
        frame.index,
        frame.image,
        tuple(boxes),
        tuple(tuple(float(v) for v in r) for r in motion),  # type: ignore[misc]
        tuple(r.box for r in left_regions),
        tuple(device.zones),
        detect_ms,
        full,
    )
