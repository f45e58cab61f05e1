"""YOLOX-style ONNX (Megvii's export): 1×3×S×S BGR 0–255 letterboxed at the top left on 114
grey, output 1×N×(5 + classes) raw per grid cell (strides 8/16/32): decoded here, then NMS.

The file carries no class names: COCO-80 unless `names` are given.

Runtimes: onnxruntime or OpenVINO; `auto` is onnxruntime. Measured here (YOLOX-Nano 416, one
thread on one AMD EPYC Zen 4 core, CPU ms per inference call, best of 6 rounds on a shared box):
onnxruntime 14.9, OpenVINO f32 18.6. OpenVINO's default bf16 on this CPU is faster (~13) but
moves scores by up to 0.2 and loses boxes at conf 0.3 against f32, so it is not used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from detectors.backends import runtimes
from detectors.backends.base import UnsupportedWeights
from detectors.backends.decoded import Decoded, DecodedBackend, choose_runtime
from detectors.backends.letterbox import Letterbox, letterbox
from detectors.coco import coco_names

FAMILY = "yolox"
RUNTIMES = ("openvino", "onnxruntime")
AUTO = "onnxruntime"
STRIDES = (8, 16, 32)


def is_yolox_head(input_shape: Sequence[int], output_shapes: Sequence[Sequence[int]]) -> bool:
    """One 1×N×(5 + classes) output for a 1×3×S×S input, N the cells of the three grids (an
    anchor-based YOLOv5-style head has 3 rows per cell and is not one)."""
    if len(input_shape) != 4 or input_shape[2] != input_shape[3] or len(output_shapes) != 1:
        return False
    shape = output_shapes[0]
    size = input_shape[2]
    cells = sum((size // stride) ** 2 for stride in STRIDES)
    return size > 0 and size % 32 == 0 and len(shape) == 3 and shape[2] > 5 and shape[1] == cells


def grids(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output row: its cell's (x, y) and its stride, in YOLOX's order (x fastest)."""
    cells, strides = [], []
    for stride in STRIDES:
        side = size // stride
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((side * side, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode(
    output: np.ndarray, cells: np.ndarray, strides: np.ndarray, conf: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of one raw output scoring obj × class ≥ conf: (xyxy, scores, class ids) in model
    input pixels."""
    rows = output.reshape(-1, output.shape[-1])
    classes = rows[:, 5:]
    class_ids = classes.argmax(axis=1)
    scores = rows[:, 4] * classes[np.arange(len(rows)), class_ids]
    keep = np.flatnonzero(scores >= conf)
    rows, stride = rows[keep], strides[keep]
    centre = (rows[:, :2] + cells[keep]) * stride
    half = np.exp(rows[:, 2:4]) * stride / 2
    xyxy = np.concatenate([centre - half, centre + half], axis=1)
    return xyxy, scores[keep], class_ids[keep]


class YoloxBackend(DecodedBackend):
    family = FAMILY
    dynamic = False

    def __init__(
        self,
        weights: Path,
        *,
        runtime: str = "auto",
        threads: int | None = None,
        names: Mapping[int, str] | None = None,
        input_shape: Sequence[int] | None = None,
        outputs: int | None = None,
    ) -> None:
        self.weights = weights
        self.runtime = choose_runtime(weights, runtime, AUTO, RUNTIMES, "a YOLOX ONNX")
        self.names = dict(names) if names else coco_names()
        self.imgsz = int(input_shape[2]) if input_shape else 416
        if outputs is not None and outputs != 5 + len(self.names):
            raise UnsupportedWeights(
                f"{weights}: {outputs} values per box, expected 5 + {len(self.names)} classes"
            )
        self.cells, self.strides = grids(self.imgsz)
        session = (
            runtimes.openvino_session
            if self.runtime == "openvino"
            else runtimes.onnxruntime_session
        )
        self.session = session(weights, threads)

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        canvas, box = letterbox(image, self.imgsz, centre=False)
        return canvas.transpose(2, 0, 1)[None].astype(np.float32), box

    def decode(self, output: object, conf: float) -> Decoded:
        return decode(output, self.cells, self.strides, conf)
