"""Image → ground: a planar homography fitted to four or more pixel ↔ [lon, lat] pairs.

Fitted in local metres (equirectangular around the pairs' centroid, exact enough over a street)
so the least-squares fit is well conditioned; results are WGS-84 lon/lat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

EARTH_RADIUS_M = 6_371_008.8


class Homography:
    def __init__(self, pixels: Sequence[Sequence[float]], lonlats: Sequence[Sequence[float]]):
        if len(pixels) != len(lonlats) or len(pixels) < 4:
            raise ValueError("a homography needs at least 4 pixel/geo pairs of equal count")
        geo = np.asarray(lonlats, dtype=np.float64)
        self.lon0, self.lat0 = geo.mean(axis=0)
        self._kx = math.radians(1) * EARTH_RADIUS_M * math.cos(math.radians(self.lat0))
        self._ky = math.radians(1) * EARTH_RADIUS_M
        metres = np.column_stack(
            ((geo[:, 0] - self.lon0) * self._kx, (geo[:, 1] - self.lat0) * self._ky)
        )
        src = np.asarray(pixels, dtype=np.float64)
        matrix, _ = cv2.findHomography(src, metres, 0)
        if matrix is None or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
            raise ValueError("the pixel/geo pairs do not determine a homography (degenerate)")
        self.matrix = matrix
        projected = self._to_metres(src)
        self.rms_error_m = float(np.sqrt(np.mean(np.sum((projected - metres) ** 2, axis=1))))
        """Root-mean-square misfit of the pairs themselves, metres (a sanity figure for setup)."""

    @classmethod
    def from_pairs(cls, pairs: Sequence[object]) -> Homography:
        """From config `HomographyPair`s (objects with `.pixel` and `.geo`)."""
        return cls([p.pixel for p in pairs], [p.geo for p in pairs])  # type: ignore[attr-defined]

    def _to_metres(self, points: np.ndarray) -> np.ndarray:
        return cv2.perspectiveTransform(points.reshape(-1, 1, 2), self.matrix).reshape(-1, 2)

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        east, north = self._to_metres(np.array([[x, y]], dtype=np.float64))[0]
        return float(self.lon0 + east / self._kx), float(self.lat0 + north / self._ky)
