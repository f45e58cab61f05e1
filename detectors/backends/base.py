"""What every backend returns and offers: boxes with NMS done, the model's class names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

MAX_DET = 300
"""Boxes kept per image after NMS (ultralytics' default)."""


class UnsupportedWeights(ValueError):
    """A weights file no backend can run (the message names the file and why)."""


@dataclass(frozen=True, slots=True)
class Boxes:
    xyxy: np.ndarray
    """(N, 4) float32 pixel boxes in the image the backend was given."""
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int))


class Backend(Protocol):
    family: str
    runtime: str
    weights: Path
    names: dict[int, str]
    """Class id → the model's class name (from the file where it has them)."""
    imgsz: int
    """The model's input side in pixels (for a dynamic model: the default side)."""
    dynamic: bool
    """Whether the model takes any input size (multiple of 32)."""

    def detect(
        self,
        image: np.ndarray,
        *,
        conf: float,
        iou: float,
        classes: Sequence[int] | None = None,
        imgsz: int | None = None,
    ) -> Boxes:
        """Boxes in `image` (BGR uint8) scoring at least `conf`, class-aware NMS at `iou`,
        only `classes` when given; `imgsz` only matters to a dynamic model."""
        ...

    def inference(self, image: np.ndarray) -> Callable[[], object]:
        """A call running only the model on `image` prepared once (raw model time)."""
        ...
