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
