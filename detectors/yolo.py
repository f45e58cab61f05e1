"""YOLO detection through ultralytics: .pt, ONNX or OpenVINO weights from devices.yaml.

`Detections` is the small typed currency between detector, tracker and pipeline (numpy arrays,
in the spirit of supervision's `Detections`). Model classes map to subjects through the
camera's `classes` table; unmapped classes are not detected at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.torchvision_compat import ensure_torchvision_ops

# No hub calls, no pip installs at run time, no banner per frame.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "False")
ensure_torchvision_ops()

from ultralytics import YOLO  # noqa: E402 - after the torchvision repair above


@dataclass(frozen=True, slots=True)
class Detections:
    xyxy: np.ndarray
    """(N, 4) float32 pixel boxes in the full frame."""
    conf: np.ndarray
    class_id: np.ndarray
    subjects: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.conf)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int), ())

    @classmethod
    def concat(cls, parts: Sequence[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.conf for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            tuple(s for p in parts for s in p.subjects),
        )


def backend_of(weights: Path) -> str:
    if weights.is_dir() or weights.suffix == ".xml":
        return "openvino"
    if weights.suffix == ".onnx":
        return "onnx"
    if weights.suffix in (".pt", ".pth"):
        return "pytorch"
    raise ValueError(f"unsupported weights {weights}: expected .pt, .onnx or an OpenVINO folder")


class YoloDetector:
    def __init__(
        self,
        weights: str | Path,
        *,
        imgsz: int = 640,
        conf: float = 0.35,
        iou: float = 0.5,
        classes: Mapping[str, str] | None = None,
    ) -> None:
        self.weights = Path(weights)
        if not self.weights.exists():
            raise FileNotFoundError(f"YOLO weights not found: {self.weights}")
        self.backend = backend_of(self.weights)
        self.imgsz = imgsz
        self.conf = conf
        self.iou = iou
        self.model = YOLO(str(self.weights), task="detect")
        names: dict[int, str] = dict(self.model.names)
        wanted = dict(classes) if classes else {name: name for name in names.values()}
        unknown = sorted(set(wanted) - set(names.values()))
        if unknown:
            raise ValueError(
                f"{self.weights.name}: classes {unknown} are not in the model "
                f"(it knows: {', '.join(names.values())})"
            )
        self.subject_of = {i: wanted[n] for i, n in names.items() if n in wanted}
        self.class_ids = sorted(self.subject_of)
        self.dynamic = self.backend == "pytorch" or self._dynamic_input()
        """Whether the model takes any input size (then moved regions are detected at their
        own size, which is where region detection saves time)."""

    def _dynamic_input(self) -> bool:
        self.model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=self.imgsz, verbose=False)
        backend = getattr(self.model.predictor.model, "backend", None) or self.model.predictor.model
        return bool(getattr(backend, "dynamic", False))

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
        result = self.model.predict(
            image,
            imgsz=imgsz,
            conf=self.conf,
            iou=self.iou,
            classes=self.class_ids,
            verbose=False,
        )[0]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty()
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float32)
        class_id = boxes.cls.cpu().numpy().astype(int)
        return Detections(
            xyxy,
            boxes.conf.cpu().numpy().astype(np.float32),
            class_id,
            tuple(self.subject_of[int(c)] for c in class_id),
        )

    def detect_regions(
        self, image: np.ndarray, regions: Sequence[tuple[int, int, int, int]]
    ) -> Detections:
        """Detect in the moved regions only: packed side by side into one mosaic and run once
        (one model call per frame instead of one per region), boxes mapped back."""
        if not regions:
            return Detections.empty()
        if len(regions) == 1 or not self.dynamic:
            return Detections.concat([self.detect(image, region) for region in regions])
        mosaic, cells = pack(image, regions)
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
        return Detections(
            np.array(boxes, np.float32),
            found.conf[keep],
            found.class_id[keep],
            tuple(found.subjects[i] for i in keep),
        )


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
