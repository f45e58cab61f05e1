"""Multi-object tracking with ByteTrack, through ultralytics' own BYTETracker."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from ultralytics.trackers.byte_tracker import BYTETracker

from detectors.yolo import Detections


@dataclass(frozen=True, slots=True)
class TrackedBox:
    track_id: int
    box: tuple[float, float, float, float]
    conf: float
    class_id: int
    det_index: int
    """Index of the detection this track was matched with in the last update."""


class _Boxes:
    """The Results-like view BYTETracker reads: conf, cls, xywh and boolean indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls

    @property
    def xywh(self) -> np.ndarray:
        xy = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        return np.concatenate([xy, self.xyxy[:, 2:] - self.xyxy[:, :2]], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: np.ndarray) -> _Boxes:
        return _Boxes(self.xyxy[index], self.conf[index], self.cls[index])


class ByteTracker:
    def __init__(
        self,
        *,
        fps: float,
        lost_s: float = 2.0,
        high_thresh: float = 0.35,
        low_thresh: float = 0.1,
        match_thresh: float = 0.8,
    ) -> None:
        self.args = SimpleNamespace(
            tracker_type="bytetrack",
            track_high_thresh=high_thresh,
            track_low_thresh=low_thresh,
            new_track_thresh=high_thresh,
            track_buffer=max(1, round(lost_s * fps)),
            match_thresh=match_thresh,
            fuse_score=True,
        )
        self.tracker = BYTETracker(self.args)

    def update(self, detections: Detections) -> list[TrackedBox]:
        boxes = _Boxes(
            detections.xyxy.astype(np.float32),
            detections.conf.astype(np.float32),
            detections.class_id.astype(np.float32),
        )
        rows = self.tracker.update(boxes)
        return [
            TrackedBox(
                track_id=int(row[4]),
                box=(float(row[0]), float(row[1]), float(row[2]), float(row[3])),
                conf=float(row[5]),
                class_id=int(row[6]),
                det_index=int(row[7]),
            )
            for row in rows
        ]
