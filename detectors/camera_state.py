"""What a camera pipeline keeps between frames: its tracks, visit logs and counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from detectors.observation import FrameRef
from detectors.zones import footprint
from ingest.video.sources import VideoSourceStats

MOVED_SHARE = 0.25
"""A track has moved once its footprint travelled this share of its box height. Only tracks
that moved hide goods from the left-object detector: people and vehicles come in; a "person"
found standing where a bag was just put down, never moving, is the bag (a model's mistake)."""


@dataclass
class TrackState:
    track_id: int
    subject: str
    class_id: int
    first_seen: datetime
    last_seen: datetime
    box: tuple[float, float, float, float]
    conf: float
    best: FrameRef
    misses: int = 0
    """Full-frame checks in a row that did not re-find this track."""
    carried: bool = False
    """Kept by the pipeline in the last frame (no motion there), not by a detection."""
    moved: bool = False
    """Its footprint has travelled since it was first seen (see `MOVED_SHARE`)."""
    origin: tuple[float, float] | None = None
    still_since: datetime | None = None
    """Since when its footprint has stayed within `MOVED_SHARE` of its box height of
    `still_at` (detectors/camera_hold.py holds still vehicles that are hidden)."""
    still_at: tuple[float, float] | None = None

    def settle(self, box: tuple[float, float, float, float], ts: datetime) -> None:
        x, y = footprint(box)
        if self.still_at is not None:
            x0, y0 = self.still_at
            if np.hypot(x - x0, y - y0) < MOVED_SHARE * (box[3] - box[1]):
                return
        self.still_at, self.still_since = (x, y), ts

    def travel(self, box: tuple[float, float, float, float]) -> None:
        x1, y1 = footprint(box)
        if self.origin is None:
            self.origin = (x1, y1)
        elif not self.moved:
            x0, y0 = self.origin
            self.moved = bool(np.hypot(x1 - x0, y1 - y0) >= MOVED_SHARE * (box[3] - box[1]))


@dataclass
class VisitLog:
    last_emit: datetime
    best: FrameRef
    subject: str


@dataclass
class CameraStats:
    frames: int = 0
    analysed: int = 0
    gate_skipped: int = 0
    """Analysed frames where nothing moved and no full-frame check was due: no detector run."""
    region_runs: int = 0
    full_runs: int = 0
    detections: int = 0
    carried: int = 0
    tracks_started: int = 0
    tracks_ended: int = 0
    tracks_held: int = 0
    """Still subjects lost and held where they stood (detectors/camera_hold.py)."""
    tracks_reclaimed: int = 0
    """Held tracks that came back under a new tracker id and took their own back."""
    observations: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    detect_ms: float = 0.0
    """Time spent in the detector (sum, ms)."""
    left_ms: float = 0.0
    """Time spent in the left-object detector (sum, ms)."""
    left_objects: int = 0
    stalls: int = 0
    ground: Counter[str] = field(default_factory=Counter)
    """A drone's ground projection: `placed`, `not_placed`, `refused_<reason>`."""
    source: VideoSourceStats | None = None
    """The reader's counters (frames read, dropped as stale, opens, failures) when threaded."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "analysed": self.analysed,
            "gate_skipped": self.gate_skipped,
            "region_runs": self.region_runs,
            "full_runs": self.full_runs,
            "detections": self.detections,
            "carried": self.carried,
            "tracks_started": self.tracks_started,
            "tracks_ended": self.tracks_ended,
            "observations": self.observations,
            "errors": dict(self.errors),
            "detect_ms": round(self.detect_ms, 1),
            "left_ms": round(self.left_ms, 1),
            "left_objects": self.left_objects,
            "stalls": self.stalls,
            **{f"ground_{name}": n for name, n in self.ground.items()},
            **(
                {}
                if self.source is None
                else {
                    "source_frames": self.source.frames,
                    "source_dropped": self.source.dropped,
                    "source_opens": self.source.opens,
                    "source_failures": self.source.failures,
                    "source_reconnects": self.source.reconnects,
                    "source_offline_s": round(self.source.offline_s, 1),
                    "source_connected": self.source.connected,
                }
            ),
        }
