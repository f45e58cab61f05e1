"""`Detections`: the small typed currency between detector, tracker and pipeline.

Numpy arrays in the spirit of supervision's `Detections`: boxes in full-frame pixels, one
score, class id and subject per box, and (where the detector knows it) the model's own class
name per box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Detections:
    xyxy: np.ndarray
    """(N, 4) float32 pixel boxes in the full frame."""
    conf: np.ndarray
    class_id: np.ndarray
    subjects: tuple[str, ...]
    names: tuple[str, ...] = ()
    """The model's class name per box; empty when the boxes did not come from a model (boxes
    the pipeline carries), "" for such a box among named ones."""

    def __len__(self) -> int:
        return len(self.conf)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int), ())

    @classmethod
    def concat(cls, parts: Sequence[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        named = any(p.names for p in parts)
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.conf for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            tuple(s for p in parts for s in p.subjects),
            tuple(n for p in parts for n in (p.names or ("",) * len(p))) if named else (),
        )

    def take(self, index: Sequence[int] | np.ndarray) -> Detections:
        """The boxes at `index`, in that order."""
        index = np.asarray(index, int)
        return Detections(
            self.xyxy[index],
            self.conf[index],
            self.class_id[index],
            tuple(self.subjects[i] for i in index),
            tuple(self.names[i] for i in index) if self.names else (),
        )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4 xyxy) with every box in `b` (M, 4): an (N, M) matrix."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
