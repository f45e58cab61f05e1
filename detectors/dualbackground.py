"""Dual background for left objects: what is new in the scene, and what is new *and still*.

Two running averages of a downscaled, blurred colour frame (`cv2.accumulateWeighted`): a
long-term one (the empty scene, time constant `background_s`) and a short-term one (the last
second or so, `still_s`). A pixel that differs from the long-term background but matches the
short-term one holds something new that stopped moving (Porikli's dual foreground). Each such
pixel gathers seconds of evidence; one that matches the empty scene again drops its evidence.

The long-term average learns only where nothing is going on: not under tracked people and
vehicles (a person standing still is not learnt, so no ghost is left when they go), not under
confirmed left objects (goods stay new until they are taken in), and not where evidence is
gathering. A whole-frame gain keeps it in step with light that changes everywhere at once,
under frozen regions too. Shadows (darker by a bounded ratio, same chromaticity, same
texture) are not new.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ingest.config.camera_extras import LeftObject

SHADOW_RATIO = (0.45, 0.92)
"""A pixel this much darker than the background, with its chromaticity and texture, is a
shadow."""
SHADOW_CHROMA = 0.045
"""Largest change of normalised r and g for a shadow."""
SHADOW_TEXTURE = 0.6
"""Smallest local correlation with the background's texture for a shadow."""
SHIFT_RESPONSE = 0.1
"""Weakest phase-correlation peak of a quarter that counts as a measured shift."""
BLUR = (5, 5)


@dataclass(frozen=True, slots=True)
class Masks:
    """Per-pixel results of one frame at the model's scale (bool arrays)."""

    new: np.ndarray
    """Differs from the empty scene (and is no shadow)."""
    moving: np.ndarray
    """Differs from the last second."""
    shift_px: float
    """How far the view moved against the empty scene (modelled pixels)."""


def alpha(dt: float, tau: float) -> float:
    return float(1.0 - np.exp(-max(dt, 0.0) / tau))


class DualBackground:
    """Long- and short-term backgrounds of one camera at `settings.width`."""

    def __init__(self, settings: LeftObject, reference: np.ndarray | None = None) -> None:
        self.settings = settings
        self.reference = reference
        self.long: np.ndarray | None = None
        self.short: np.ndarray | None = None
        self.size: tuple[int, int] | None = None
        self._window: np.ndarray | None = None

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The frame as the model sees it: downscaled, blurred, float32 BGR."""
        height, width = image.shape[:2]
        scale = min(1.0, self.settings.width / width)
        size = (round(width * scale), round(height * scale))
        small = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        return cv2.GaussianBlur(small, BLUR, 0).astype(np.float32)

    def relearn(self, work: np.ndarray) -> None:
        """Start over from the saved empty scene (matched to this frame's light), else from
        this frame."""
        self.size = (work.shape[1], work.shape[0])
        if self.reference is not None:
            reference = self.prepare(self.reference)
            if reference.shape == work.shape:
                self.long = reference * gain(work, reference, None)
                self.short = work.copy()
                return
        self.long = work.copy()
        self.short = work.copy()

    def compare(self, work: np.ndarray, quiet: np.ndarray | None) -> Masks:
        """New and moving pixels of `work`; `quiet` (bool) marks where the long-term gain may
        be measured (nothing new there last frame)."""
        if self.long is None or self.short is None or work.shape != self.long.shape:
            self.relearn(work)
        assert self.long is not None and self.short is not None
        self.long *= gain(work, self.long, quiet)
        threshold = self.settings.threshold
        new = channel_max(cv2.absdiff(work, self.long)) > threshold
        if new.any():
            new &= ~shadow(work, self.long)
        moving = channel_max(cv2.absdiff(work, self.short)) > threshold
        return Masks(new, moving, self._shift(work))

    def adopt(self, mask: np.ndarray) -> None:
        """Take the short-term background as the long-term one where `mask` is True (what
        stands still there is scene, not news)."""
        assert self.long is not None and self.short is not None
        self.long[mask] = self.short[mask]

    def learn(self, work: np.ndarray, dt: float, frozen: np.ndarray) -> None:
        """Fold this frame in: the short-term background everywhere, the long-term one where
        `frozen` is False."""
        assert self.long is not None and self.short is not None
        cv2.accumulateWeighted(work, self.short, alpha(dt, self.settings.still_s))
        learn = (~frozen).astype(np.uint8)
        cv2.accumulateWeighted(work, self.long, alpha(dt, self.settings.background_s), learn)

    def _shift(self, work: np.ndarray) -> float:
        """View shift against the long-term background, measured at half the model's scale in
        each quarter of the frame: the median of the quarters, and 0 unless three of the four
        moved alike (a subject walking close past the lens moves one or two quarters)."""
        assert self.long is not None
        a = cv2.pyrDown(cv2.cvtColor(self.long, cv2.COLOR_BGR2GRAY))
        b = cv2.pyrDown(cv2.cvtColor(work, cv2.COLOR_BGR2GRAY))
        h, w = dft_side(a.shape[0] // 2), dft_side(a.shape[1] // 2)
        if self._window is None or self._window.shape != (h, w):
            self._window = cv2.createHanningWindow((w, h), cv2.CV_32F)
        shifts = []
        for y in (0, a.shape[0] - h):
            for x in (0, a.shape[1] - w):
                (dx, dy), response = cv2.phaseCorrelate(
                    a[y : y + h, x : x + w], b[y : y + h, x : x + w], self._window
                )
                if response > SHIFT_RESPONSE:
                    shifts.append((dx, dy))
        if len(shifts) < 3:
            return 0.0
        vectors = np.array(shifts)
        median = np.median(vectors, axis=0)
        alike = np.hypot(*(vectors - median).T) < max(0.5, 0.5 * float(np.hypot(*median)))
        return 2.0 * float(np.hypot(*median)) if alike.sum() >= 3 else 0.0


def dft_side(limit: int) -> int:
    """Largest even side up to `limit` that the DFT takes unpadded (a padded odd size biases
    OpenCV's phase correlation by half a pixel)."""
    side = limit - limit % 2
    while side > 8 and cv2.getOptimalDFTSize(side) != side:
        side -= 2
    return max(side, 8)


def channel_max(image: np.ndarray) -> np.ndarray:
    return cv2.max(cv2.max(image[..., 0], image[..., 1]), image[..., 2])


def gain(work: np.ndarray, background: np.ndarray, quiet: np.ndarray | None) -> float:
    """Median brightness ratio of frame to background over quiet pixels (every 4th)."""
    a = work[::4, ::4].sum(axis=2)
    b = background[::4, ::4].sum(axis=2)
    ok = b > 30
    if quiet is not None:
        ok &= quiet[::4, ::4]
    if ok.sum() < 50:
        return 1.0
    ratio = float(np.median(a[ok] / b[ok]))
    return ratio if abs(ratio - 1.0) > 0.005 else 1.0


def shadow(work: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Darker by a bounded ratio, same chromaticity, same texture: a cast shadow. (A dark bag
    on a grey pavement passes the first two; it does not keep the pavement's texture.)"""
    wb, wg, wr = cv2.split(work)
    bb, bg, br = cv2.split(background)
    a = wb + wg + wr + 1.0
    b = bb + bg + br + 1.0
    ratio = a / b
    dark = (ratio > SHADOW_RATIO[0]) & (ratio < SHADOW_RATIO[1])
    if not dark.any():
        return dark
    chroma = cv2.absdiff(wr / a, br / b) + cv2.absdiff(wg / a, bg / b)
    return dark & (chroma < SHADOW_CHROMA) & (texture_match(a, b) > SHADOW_TEXTURE)


def texture_match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Local normalised cross-correlation of two grey images (7×7 windows)."""
    size = (7, 7)
    mean_a = cv2.boxFilter(a, -1, size)
    mean_b = cv2.boxFilter(b, -1, size)
    var_a = cv2.boxFilter(a * a, -1, size) - mean_a * mean_a
    var_b = cv2.boxFilter(b * b, -1, size) - mean_b * mean_b
    cov = cv2.boxFilter(a * b, -1, size) - mean_a * mean_b
    return cov / np.sqrt(np.maximum(var_a, 1.0) * np.maximum(var_b, 1.0))
