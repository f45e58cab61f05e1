"""What is where in the real pixels the backend tests use, and how a finding is judged."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.backends.base import Boxes

Box = tuple[float, float, float, float]
Found = list[tuple[str, float, np.ndarray]]

GIF = "footage/intel-person-bicycle-car.gif"
CYCLIST_FRAMES = range(24, 41)
"""Frames of the Intel clip where the cyclist rides across the top right."""
CYCLIST_X = 330
"""In those frames the cyclist is right of this x, the car left of it."""
BICYCLE: Box = (130, 140, 570, 420)
"""The racing bicycle leaning on the porch in dog.jpg (xyxy, by eye)."""
PICKUP: Box = (465, 75, 695, 172)
"""The white pickup truck parked across the street in dog.jpg."""


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def named(boxes: Boxes, names: dict[int, str]) -> Found:
    return [
        (names[int(c)], float(s), x)
        for x, s, c in zip(boxes.xyxy, boxes.scores, boxes.class_ids, strict=True)
    ]


def finds(found: Found, classes: set[str], where: Box, least: float = 0.5) -> bool:
    """Whether a box of one of `classes` overlaps `where` with IoU ≥ `least`."""
    return any(name in classes and iou(box, where) >= least for name, _, box in found)


def right_of(found: Found, classes: set[str], x: float) -> bool:
    return any(name in classes and box[0] > x for name, _, box in found)


def left_of(found: Found, classes: set[str], x: float) -> bool:
    return any(name in classes and box[2] < x for name, _, box in found)
