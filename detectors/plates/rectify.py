"""A plate cut out of the frame by its four corners, squared up, and split when double-row."""

from __future__ import annotations

import cv2
import numpy as np

DOUBLE_ROW_SPLITS = (0.4, 0.35, 0.45)
"""Where the top row (province, authority letter) of a double-row plate may end, as a fraction
of the rectified height: GA 36 draws it at about 0.4 of the plate; the rim the corners include
moves it."""


def order_corners(points: np.ndarray) -> np.ndarray:
    """(4, 2) points as top-left, top-right, bottom-right, bottom-left, whatever order they came."""
    pts = np.asarray(points, np.float32).reshape(4, 2)
    s = pts.sum(axis=1)
    d = pts[:, 1] - pts[:, 0]
    ordered = np.array(
        [pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]], np.float32
    )
    if len({tuple(p) for p in ordered.tolist()}) < 4:
        return pts
    return ordered


def rectify(image: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The quadrilateral warped to an upright rectangle as wide and tall as its longer edges."""
    tl, tr, br, bl = order_corners(corners)
    width = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    height = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    w, h = max(2, round(float(width))), max(2, round(float(height)))
    target = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    matrix = cv2.getPerspectiveTransform(np.stack([tl, tr, br, bl]), target)
    return cv2.warpPerspective(
        image, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )


def split_rows(plate: np.ndarray, at: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """A rectified double-row plate's top and bottom rows, cut at `at` of its height."""
    line = max(1, min(plate.shape[0] - 1, round(plate.shape[0] * at)))
    return plate[:line], plate[line:]
