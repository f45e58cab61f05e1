"""The camera's detector: one facade over the model-family backends (detectors/backends/).

The weights file picks the backend (ultralytics .pt/.onnx/OpenVINO, a YOLOX ONNX, a YOLOv8/11
int8 TFLite); model classes map to subjects through the camera's `classes` table, or, when
that is empty and the model knows the COCO-80 classes, through detectors/coco.py. Unmapped
classes are not detected at all. Moved regions are packed into one mosaic for models that take
any input size at the frame's scale; a fixed-input model gets the mosaic letterboxed to its
input.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from detectors.backends import load_backend
from detectors.backends.base import Boxes
from detectors.coco import COCO_SUBJECTS, is_coco80
from detectors.detections import Detections, box_iou

__all__ = ["GAP", "Detections", "YoloDetector", "one_box_per_object", "pack"]

log = logging.getLogger(__name__)


class YoloDetector:
    def __init__(
        self,
        weights: str | Path,
        *,
        imgsz: int = 640,
        conf: float = 0.35,
        iou: float = 0.5,
        classes: Mapping[str, str] | None = None,
        family: str | None = None,
        runtime: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.weights = Path(weights)
        if not self.weights.exists():
            raise FileNotFoundError(f"YOLO weights not found: {self.weights}")
        self.conf = conf
        self.iou = iou
        self.model = load_backend(self.weights, family, runtime, imgsz, threads=threads)
        self.backend = f"{self.model.family}/{self.model.runtime}"
        """Which family and runtime run the model, e.g. `yolox/onnxruntime`."""
        self.dynamic = self.model.dynamic
        """Whether the model takes any input size (then moved regions are detected at their
        own size, which is where region detection saves time)."""
        self.imgsz = imgsz if self.dynamic else self.model.imgsz
        if self.imgsz != imgsz:
            log.info("%s: fixed input %d, imgsz %d does not apply", self.weights, self.imgsz, imgsz)
        names = self.model.names
        if classes:
            wanted = dict(classes)
        elif is_coco80(names):
            wanted = dict(COCO_SUBJECTS)
        else:
            wanted = {name: name for name in names.values()}
        unknown = sorted(set(wanted) - set(names.values()))
        if classes and unknown:
            raise ValueError(
                f"{self.weights.name}: classes {unknown} are not in the model "
                f"(it knows: {', '.join(names.values())})"
            )
        self.names = names
        self.subject_of = {i: wanted[n] for i, n in names.items() if n in wanted}
        """Model class id → subject, for the classes detected."""
        self.class_ids = sorted(self.subject_of)

    def detect(
        self, image: np.ndarray, region: tuple[int, int, int, int] | None = None
    ) -> Detections:
        """Detect in the whole frame, or in `region` (x1, y1, x2, y2) at the frame's scale."""
        height, width = image.shape[:2]
        x0 = y0 = 0
        imgsz = self.imgsz
        if region is not None:
            x0, y0, x1, y1 = region
            if self.dynamic:
                scale = min(1.0, self.imgsz / max(width, height))
                side = max(x1 - x0, y1 - y0) * scale
                imgsz = max(64, math.ceil(side / 32) * 32)
            image = image[y0:y1, x0:x1]
        found = self._predict(image, imgsz)
        if len(found):
            found.xyxy[:, [0, 2]] += x0
            found.xyxy[:, [1, 3]] += y0
        return found

    def _predict(self, image: np.ndarray, imgsz: int) -> Detections:
        boxes: Boxes = self.model.detect(
            image, conf=self.conf, iou=self.iou, classes=self.class_ids, imgsz=imgsz
        )
        if not len(boxes):
            return Detections.empty()
        ids = boxes.class_ids.astype(int)
        found = Detections(
            boxes.xyxy.astype(np.float32),
            boxes.scores.astype(np.float32),
            ids,
            tuple(self.subject_of[int(c)] for c in ids),
            tuple(self.names[int(c)] for c in ids),
        )
        return one_box_per_object(found)

    def detect_regions(
        self, image: np.ndarray, regions: Sequence[tuple[int, int, int, int]]
    ) -> Detections:
        """Detect in the moved regions only: packed side by side into one mosaic and run once
        (one model call per frame instead of one per region), boxes mapped back. A dynamic model
        sees the mosaic at the frame's scale; a fixed-input one sees it letterboxed to its input
        (on vtest.avi the gate leaves 2.3 regions a frame: one call each cost 3× one model
        call per analysed frame, the mosaic about one)."""
        if not regions:
            return Detections.empty()
        if len(regions) == 1:
            return self.detect(image, regions[0])
        mosaic, cells = pack(image, regions)
        imgsz = self.imgsz
        if self.dynamic:
            height, width = image.shape[:2]
            scale = min(1.0, self.imgsz / max(width, height))
            imgsz = max(64, math.ceil(max(mosaic.shape[:2]) * scale / 32) * 32)
        found = self._predict(mosaic, imgsz)
        if not len(found):
            return found
        centres = (found.xyxy[:, :2] + found.xyxy[:, 2:]) / 2
        keep, boxes = [], []
        for i, (cx, cy) in enumerate(centres):
            for (mx, my, w, h), (x0, y0, _, _) in cells:
                if mx <= cx < mx + w and my <= cy < my + h:
                    box = found.xyxy[i].copy()
                    box[[0, 2]] = np.clip(box[[0, 2]], mx, mx + w) - mx + x0
                    box[[1, 3]] = np.clip(box[[1, 3]], my, my + h) - my + y0
                    keep.append(i)
                    boxes.append(box)
                    break
        if not keep:
            return Detections.empty()
        kept = found.take(keep)
        return Detections(
            np.array(boxes, np.float32), kept.conf, kept.class_id, kept.subjects, kept.names
        )


SAME_OBJECT_GROUPS: Mapping[str, str] = {
    "car": "motor vehicle",
    "truck": "motor vehicle",
    "bicycle": "two-wheeler",
    "motorcycle": "two-wheeler",
}
"""Subjects a model may both call one object (vtest.avi's van: truck 0.75 and car 0.64)."""
SAME_OBJECT_IOU = 0.6


def one_box_per_object(found: Detections) -> Detections:
    """Keep the most confident box where two subjects of one group cover the same object.

    The backends' NMS is per class, so a van boxed as truck and as car became two tracks and
    two cases for one vehicle."""
    groups = [SAME_OBJECT_GROUPS.get(s) for s in found.subjects]
    if len(found) < 2 or sum(g is not None for g in groups) < 2:
        return found
    order = np.argsort(-found.conf, kind="stable")
    ious = box_iou(found.xyxy, found.xyxy)
    dropped: set[int] = set()
    for rank, i in enumerate(order):
        if i in dropped or groups[i] is None:
            continue
        for j in order[rank + 1 :]:
            if (
                j not in dropped
                and groups[j] == groups[i]
                and found.class_id[j] != found.class_id[i]
                and ious[i, j] >= SAME_OBJECT_IOU
            ):
                dropped.add(int(j))
    if not dropped:
        return found
    return found.take([i for i in range(len(found)) if i not in dropped])


GAP = 16
"""Grey pixels between packed regions, so no box spans two of them."""


def pack(
    image: np.ndarray, regions: Sequence[tuple[int, int, int, int]]
) -> tuple[np.ndarray, list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]]:
    """Shelf-pack crops into one mosaic; returns it and (cell x, y, w, h) → region pairs."""
    sizes = [(r[2] - r[0], r[3] - r[1]) for r in regions]
    area = sum((w + GAP) * (h + GAP) for w, h in sizes)
    row_width = max(max(w for w, _ in sizes), math.ceil(math.sqrt(area)))
    order = sorted(range(len(regions)), key=lambda i: -sizes[i][1])
    cells: list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = []
    x = y = shelf = 0
    for i in order:
        w, h = sizes[i]
        if x and x + w > row_width:
            x, y, shelf = 0, y + shelf + GAP, 0
        cells.append(((x, y, w, h), regions[i]))
        x += w + GAP
        shelf = max(shelf, h)
    mosaic_w = max(cx + w for (cx, _, w, _), _ in cells)
    mosaic_h = max(cy + h for (_, cy, _, h), _ in cells)
    mosaic = np.full((mosaic_h, mosaic_w, 3), 114, np.uint8)
    for (cx, cy, w, h), (x0, y0, x1, y1) in cells:
        mosaic[cy : cy + h, cx : cx + w] = image[y0:y1, x0:x1]
    return mosaic, cells
