"""A still camera: a fixed camera over an unchanging scene, given as one image file.

The image is delivered again and again at a frame rate, each time with fresh sensor noise (a
real sensor never returns the same pixels twice, so a pipeline fed a bit-identical frame would
be tested on something no camera produces). The noise is seeded: the same source yields the
same frames on every run. `FileFrames` and `VideoSource` read a `stream` ending in an image
suffix through this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from ingest.frames import Frame
from ingest.video.filecheck import unreadable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_FPS = 5.0
"""Frames a second when the camera's `detect.fps` does not say."""
NOISE_SIGMA = 2.0
"""Standard deviation of the per-pixel sensor noise, in grey levels (0-255)."""


def is_still(url: str | Path) -> bool:
    """Whether a `stream` names an image file (a path or file://, not a URL)."""
    text = str(url)
    if "://" in text and not text.startswith("file://"):
        return False
    return Path(text.removeprefix("file://")).suffix.lower() in IMAGE_SUFFIXES


def unreadable_image(path: str | Path) -> str:
    """Why OpenCV could not read an image file."""
    return unreadable(path, "OpenCV does not recognise the {size}-byte file as an image")


def read_still(path: str | Path, device_id: str) -> np.ndarray:
    """The image as BGR pixels; FileNotFoundError or ValueError that say why not."""
    file = Path(str(path).removeprefix("file://"))
    if not file.exists():
        raise FileNotFoundError(f"{device_id}: still image not found: {file}")
    image = cv2.imread(str(file), cv2.IMREAD_COLOR) if file.is_file() else None
    if image is None:
        raise ValueError(f"{device_id}: {file}: {unreadable_image(file)}")
    return image


NOISE_WINDOW = 1 << 20
"""Offsets a frame's noise window may start at, within the source's noise bank."""


@dataclass
class StillScene:
    """One image, delivered as frames `1/fps` apart with seeded Gaussian sensor noise.

    The noise is drawn once per run of frames, as a bank of rounded Gaussian values a little
    longer than the image; each frame adds the window of it starting at a random offset. Pixel
    by pixel a frame's noise is independent of the previous frame's (the gate sees the
    difference of two independent draws, as with a real sensor) while a frame costs no random
    draws per pixel: ~1 ms instead of ~12 ms for 768×576.
    """

    image: np.ndarray = field(repr=False)
    fps: float = DEFAULT_FPS
    noise_sigma: float = NOISE_SIGMA
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"a still camera needs a positive frame rate, got {self.fps}")
        if not (self.noise_sigma >= 0 and math.isfinite(self.noise_sigma)):
            raise ValueError(f"noise_sigma must be a grey-level count >= 0, got {self.noise_sigma}")
        self._base = self.image.astype(np.int16)

    @classmethod
    def open(
        cls,
        path: str | Path,
        device_id: str,
        *,
        fps: float | None = None,
        noise_sigma: float = NOISE_SIGMA,
        seed: int = 0,
    ) -> StillScene:
        return cls(read_still(path, device_id), float(fps or DEFAULT_FPS), noise_sigma, seed)

    def count_for(self, duration_s: float | None) -> int | None:
        """Frames in `duration_s` seconds (None: endless)."""
        if duration_s is None:
            return None
        return max(0, math.floor(duration_s * self.fps + 1e-9))

    def offset(self, index: int) -> timedelta:
        return timedelta(seconds=index / self.fps)

    def frames(
        self, device_id: str, start: datetime, count: int | None = None, first_index: int = 0
    ) -> Iterator[Frame]:
        """`count` frames (None: endlessly) stamped `start` + index / fps; every call yields
        the same frames (seeded anew)."""
        rng = np.random.default_rng(self.seed)
        size = self.image.size
        bank = None
        if self.noise_sigma > 0:
            draws = rng.standard_normal(size + NOISE_WINDOW, dtype=np.float32)
            draws *= np.float32(self.noise_sigma)
            bank = np.clip(np.rint(draws), -127, 127).astype(np.int8)
        index = 0
        while count is None or index < count:
            if bank is None:
                image = self.image.copy()
            else:
                start_at = int(rng.integers(0, NOISE_WINDOW + 1))
                noisy = self._base + bank[start_at : start_at + size].reshape(self.image.shape)
                image = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
            yield Frame(device_id, first_index + index, start + self.offset(index), image)
            index += 1
