"""YOLOv8/11 full-integer (int8) TFLite, as ultralytics exports it: 1×S×S×3 int8 RGB input
(quantised with the input tensor's scale and zero point from 0–1 pixels, letterboxed centred on
114 grey), output 1×(4 + classes)×N int8 (dequantised with the output tensor's scale and zero
point: cx, cy, w, h normalised to the input side, then class scores), no NMS.

Class names come from the file's embedded metadata; COCO-80 when it has none and 80 classes.

Runtimes: LiteRT (XNNPACK's int8 kernels) or OpenVINO (reads the .tflite directly); `auto` is
LiteRT. Measured here (one thread on one AMD EPYC Zen 4 core, CPU ms per inference call, best
of 6 rounds on a shared box): 640: LiteRT 28.0, OpenVINO 50.8; 416: LiteRT 12.1, OpenVINO 22.0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detectors.backends import runtimes
from detectors.backends.base import UnsupportedWeights
from detectors.backends.decoded import Decoded, DecodedBackend, choose_runtime
from detectors.backends.letterbox import Letterbox, letterbox
from detectors.backends.tflite_metadata import metadata, names_of
from detectors.coco import COCO_NAMES, coco_names

FAMILY = "yolov8-tflite"
RUNTIMES = ("litert", "openvino")
AUTO = "litert"


@dataclass(frozen=True, slots=True)
class Quantisation:
    """real = (q - zero_point) × scale."""

    scale: float
    zero_point: int

    @classmethod
    def of(cls, detail: dict) -> Quantisation:
        scale, zero_point = detail["quantization"]
        return cls(float(scale), int(zero_point))

    def lut(self, dtype: type[np.integer]) -> np.ndarray:
        """uint8 pixel (0–255) → quantised input value, for cv2.LUT."""
        info = np.iinfo(dtype)
        real = np.arange(256, dtype=np.float64) / 255.0
        return np.clip(np.round(real / self.scale + self.zero_point), info.min, info.max).astype(
            dtype
        )

    def dequantise(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)

    def quantise(self, real: float, dtype: type[np.integer]) -> int:
        """The smallest quantised value whose real value is ≥ `real` (a threshold)."""
        info = np.iinfo(dtype)
        return int(np.clip(np.ceil(real / self.scale + self.zero_point), info.min, info.max))


def decode(
    output: np.ndarray, quant: Quantisation, size: int, conf: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xyxy in input pixels, scores, class ids) of the columns scoring ≥ conf. Thresholds in the
    integer domain (dequantising is monotonic), dequantises only what passes."""
    rows = output.reshape(output.shape[-2], output.shape[-1])
    classes = rows[4:]
    best = classes.max(axis=0)
    if np.issubdtype(rows.dtype, np.integer):
        keep = np.flatnonzero(best >= quant.quantise(conf, rows.dtype.type))
        picked = quant.dequantise(rows[:, keep])
    else:
        keep = np.flatnonzero(best >= conf)
        picked = rows[:, keep].astype(np.float32)
    class_ids = picked[4:].argmax(axis=0)
    scores = picked[4:][class_ids, np.arange(picked.shape[1])]
    centre, half = picked[:2].T * size, picked[2:4].T * size / 2
    return np.concatenate([centre - half, centre + half], axis=1), scores, class_ids


def file_names(weights: Path, classes: int) -> dict[int, str]:
    """The names in the file's metadata; else COCO-80 for 80 classes, else the class ids."""
    found = names_of(metadata(weights))
    if found is not None:
        return found
    return coco_names() if classes == len(COCO_NAMES) else {i: str(i) for i in range(classes)}


class YoloV8TfliteBackend(DecodedBackend):
    family = FAMILY
    dynamic = False

    def __init__(
        self,
        weights: Path,
        *,
        runtime: str = "auto",
        threads: int | None = None,
        names: Mapping[int, str] | None = None,
    ) -> None:
        self.weights = weights
        self.runtime = choose_runtime(weights, runtime, AUTO, RUNTIMES, "a YOLOv8 TFLite")
        interpreter = runtimes.litert_interpreter(weights, threads)
        source = interpreter.get_input_details()[0]
        target = interpreter.get_output_details()[0]
        shape, out_shape = list(source["shape"]), list(target["shape"])
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or len(out_shape) != 3:
            raise UnsupportedWeights(
                f"{weights}: expected a 1×S×S×3 input and a 1×(4+classes)×N output "
                f"(a YOLOv8/11 detect export), got {shape} → {out_shape}"
            )
        self.imgsz = int(shape[1])
        self.input_dtype = np.dtype(source["dtype"])
        self.input_quant = Quantisation.of(source)
        self.output_quant = Quantisation.of(target)
        if self.input_dtype.kind in "iu" and not self.input_quant.scale:
            raise UnsupportedWeights(f"{weights}: integer input without quantisation parameters")
        self.lut = (
            self.input_quant.lut(self.input_dtype.type) if self.input_dtype.kind in "iu" else None
        )
        classes = out_shape[1] - 4
        self.names = dict(names) if names else file_names(weights, classes)
        if len(self.names) != classes:
            raise UnsupportedWeights(
                f"{weights}: {classes} class scores per box but {len(self.names)} class names"
            )
        if self.runtime == "litert":
            self.session = runtimes.litert_session(interpreter)
        else:
            del interpreter
            self.session = runtimes.openvino_session(weights, threads)

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        canvas, box = letterbox(image, self.imgsz, centre=True)
        rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
        tensor = cv2.LUT(rgb, self.lut) if self.lut is not None else rgb / np.float32(255)
        return tensor[None].astype(self.input_dtype, copy=False), box

    def decode(self, output: object, conf: float) -> Decoded:
        return decode(output, self.output_quant, self.imgsz, conf)
