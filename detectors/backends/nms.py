"""Class-aware non-maximum suppression (OpenCV's batched NMS)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detectors.backends.base import MAX_DET, Boxes


def select(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    *,
    conf: float,
    iou: float,
    classes: Sequence[int] | None = None,
) -> Boxes:
    """Candidates at or above `conf` (of `classes` only when given), then NMS per class, best
    first, at most MAX_DET."""
    keep = scores >= conf
    if classes is not None:
        keep &= np.isin(class_ids, np.asarray(classes, int))
    if not keep.any():
        return Boxes.empty()
    xyxy, scores, class_ids = xyxy[keep], scores[keep], class_ids[keep]
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    index = cv2.dnn.NMSBoxesBatched(
        xywh.astype(np.float32),
        scores.astype(np.float32),
        class_ids.astype(np.int32),
        float(conf),
        float(iou),
        top_k=MAX_DET,
    )
    index = np.asarray(index, int).reshape(-1)
    return Boxes(
        xyxy[index].astype(np.float32),
        scores[index].astype(np.float32),
        class_ids[index].astype(int),
    )
