"""Ultralytics weights run by ultralytics itself: .pt (PyTorch), an ultralytics-exported
.onnx (onnxruntime) or an OpenVINO folder/.xml; class names from the file, NMS by ultralytics.

The runtime follows the file (ultralytics picks it); asking for another is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from detectors.backends.base import Boxes, UnsupportedWeights
from detectors.torchvision_compat import ensure_torchvision_ops

# No hub calls, no pip installs at run time, no banner per frame.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "False")
ensure_torchvision_ops()

import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402 - after the torchvision repair above

FAMILY = "ultralytics"


def runtime_of(weights: Path) -> str:
    """The engine ultralytics runs this file on."""
    if weights.is_dir() or weights.suffix == ".xml":
        return "openvino"
    if weights.suffix == ".onnx":
        return "onnxruntime"
    if weights.suffix in (".pt", ".pth"):
        return "pytorch"
    raise UnsupportedWeights(
        f"{weights}: not ultralytics weights (expected .pt, .onnx or an OpenVINO folder)"
    )


class UltralyticsBackend:
    family = FAMILY

    def __init__(self, weights: Path, *, runtime: str = "auto", imgsz: int = 640) -> None:
        self.weights = weights
        self.runtime = runtime_of(weights)
        if runtime not in ("auto", "ultralytics", self.runtime):
            raise UnsupportedWeights(
                f"{weights}: ultralytics runs this file on {self.runtime}, not {runtime!r} "
                "(export the model to that runtime's format instead)"
            )
        self.imgsz = imgsz
        self.model = YOLO(str(weights), task="detect")
        self.names: dict[int, str] = {int(k): str(v) for k, v in self.model.names.items()}
        self.dynamic = self.runtime == "pytorch" or self._dynamic_input()

    def _dynamic_input(self) -> bool:
        self.model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=self.imgsz, verbose=False)
        backend = getattr(self.model.predictor.model, "backend", None) or self.model.predictor.model
        return bool(getattr(backend, "dynamic", False))

    def detect(
        self,
        image: np.ndarray,
        *,
        conf: float,
        iou: float,
        classes: Sequence[int] | None = None,
        imgsz: int | None = None,
    ) -> Boxes:
        result = self.model.predict(
            image,
            imgsz=imgsz or self.imgsz,
            conf=conf,
            iou=iou,
            classes=list(classes) if classes is not None else None,
            verbose=False,
        )[0]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Boxes.empty()
        return Boxes(
            boxes.xyxy.cpu().numpy().astype(np.float32),
            boxes.conf.cpu().numpy().astype(np.float32),
            boxes.cls.cpu().numpy().astype(int),
        )

    def inference(self, image: np.ndarray) -> Callable[[], object]:
        self.model.predict(image, imgsz=self.imgsz, verbose=False)
        predictor = self.model.predictor
        tensor = predictor.preprocess([image])

        def run() -> object:
            with torch.inference_mode():
                return predictor.model(tensor)

        return run
