"""Plate detection with HyperLPR3's YOLOv5-face style ONNX model (box, four corners, rows).

The model takes 1×3×S×S RGB in 0–1, the image letterboxed in the centre on grey 114, and
returns (1, N, 15) candidates already decoded to input pixels: cx, cy, w, h, objectness, four
corner points (x, y), then the single-row and double-row class scores. No NMS in the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class PlateDetection:
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in the pixels of the image given to `detect`."""
    corners: np.ndarray
    """(4, 2) float32: the plate's corners as the model orders them (TL, TR, BR, BL)."""
    score: float
    double_row: bool


@dataclass(frozen=True, slots=True)
class Letterbox:
    scale: float
    left: int
    top: int


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """`image` (BGR) scaled to fit `size`×`size`, centred, padded with grey 114."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = np.full((size, size, 3), PAD_VALUE, np.uint8)
    padded[top : top + new_h, left : left + new_w] = resized
    return padded, Letterbox(scale, left, top)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression over (N, 4) x1y1x2y2 boxes; kept indices, best first."""
    order = np.argsort(-scores)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return keep


def decode(raw: np.ndarray, lb: Letterbox, *, conf: float, iou: float) -> list[PlateDetection]:
    """(N, 15) model output → detections in the original image's pixels, after NMS."""
    rows = raw[raw[:, 4] > conf]
    if not len(rows):
        return []
    classes = rows[:, 13:15] * rows[:, 4:5]
    scores = classes.max(axis=1)
    rows, classes, scores = rows[scores > conf], classes[scores > conf], scores[scores > conf]
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    out = []
    for i in nms(boxes, scores, iou):
        box = (boxes[i] - [lb.left, lb.top, lb.left, lb.top]) / lb.scale
        corners = (rows[i, 5:13].reshape(4, 2) - [lb.left, lb.top]) / lb.scale
        out.append(
            PlateDetection(
                box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                corners=corners.astype(np.float32),
                score=float(scores[i]),
                double_row=bool(classes[i, 1] > classes[i, 0]),
            )
        )
    return out


class PlateDetector:
    """HyperLPR3 plate detector (`plate_detect_hyperlpr3_640.onnx` or `_320`) on onnxruntime."""

    def __init__(
        self,
        model: str | Path,
        *,
        conf: float = 0.5,
        iou: float = 0.5,
        threads: int = 1,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        tensor = self.session.get_inputs()[0]
        self.input_name = tensor.name
        self.size = int(tensor.shape[2])
        self.conf = conf
        self.iou = iou

    def detect(self, image: np.ndarray) -> list[PlateDetection]:
        """Plates in a BGR image, best first."""
        padded, lb = letterbox(image, self.size)
        blob = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None]
        blob = blob.astype(np.float32) / 255.0
        raw = self.session.run(None, {self.input_name: blob})[0][0]
        return decode(raw, lb, conf=self.conf, iou=self.iou)
