"""Letterboxing a frame into a square model input, and boxes back to the frame."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD = 114


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where the frame sits in the model input: input = frame × scale + pad, per axis."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    width: int
    """The frame's size, to clip boxes to."""
    height: int

    def to_frame(self, xyxy: np.ndarray) -> np.ndarray:
        """Model-input xyxy → frame xyxy, clipped to the frame."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, [0, 2]] = (xyxy[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (xyxy[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, self.width)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, self.height)
        return out

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, [0, 2]] = xyxy[:, [0, 2]] * self.scale_x + self.pad_x
        out[:, [1, 3]] = xyxy[:, [1, 3]] * self.scale_y + self.pad_y
        return out


def letterbox(image: np.ndarray, size: int, *, centre: bool) -> tuple[np.ndarray, Letterbox]:
    """`image` scaled to fit a `size` square keeping its aspect, padded grey (114): at the
    top left (YOLOX) or centred (ultralytics)."""
    height, width = image.shape[:2]
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    pad_x = (size - new_w) // 2 if centre else 0
    pad_y = (size - new_h) // 2 if centre else 0
    canvas = np.full((size, size, 3), PAD, np.uint8)
    resized = (
        image
        if (new_w, new_h) == (width, height)
        else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Letterbox(new_w / width, new_h / height, pad_x, pad_y, width, height)
