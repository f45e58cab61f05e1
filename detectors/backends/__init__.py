"""Detector backends, one per model family, chosen by the weights file.

    load_backend(weights, family=None, runtime="auto", imgsz=640) -> Backend

Folder, .xml, .pt → `ultralytics` (ultralytics runs it); .tflite → `yolov8-tflite`; .onnx →
read the graph: ultralytics exports carry `names` in their metadata, a YOLOX export has one
1×N×(5 + classes) output, a row per grid cell. `family` overrides what the file says. Boxes come
back in the frame's pixels with NMS done, with the model's class names.

`runtime: auto` per family, measured on this project's 2-core AMD EPYC (Zen 4) box, one thread
per process (as the capacity benchmark runs it): YOLOX-Nano 416 → onnxruntime (OpenVINO f32
~25 % slower); YOLOv8n int8 TFLite → LiteRT (OpenVINO ~1.8× slower); ultralytics files →
whatever ultralytics runs them on. Figures in each family's module and bench/detect.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detectors.backends.base import Backend, Boxes, UnsupportedWeights

FAMILIES = ("ultralytics", "yolox", "yolov8-tflite")
RUNTIMES = ("auto", "openvino", "onnxruntime", "litert", "ultralytics")

__all__ = ["FAMILIES", "RUNTIMES", "Backend", "Boxes", "UnsupportedWeights", "family_of",
           "load_backend"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class OnnxGraph:
    ultralytics: bool
    """Whether the metadata carries ultralytics' `names`."""
    input_shape: list[int]
    output_shapes: list[list[int]]

    @property
    def yolox(self) -> bool:
        from detectors.backends.yolox import is_yolox_head

        return is_yolox_head(self.input_shape, self.output_shapes)


def onnx_graph(weights: Path) -> OnnxGraph:
    import onnx

    try:
        model = onnx.load(str(weights), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise UnsupportedWeights(f"{weights}: not a readable ONNX model: {error}") from error

    def dims(value: Any) -> list[int]:
        return [d.dim_value for d in value.type.tensor_type.shape.dim]

    initialisers = {init.name for init in model.graph.initializer}
    inputs = [dims(i) for i in model.graph.input if i.name not in initialisers]
    return OnnxGraph(
        any(prop.key == "names" for prop in model.metadata_props),
        inputs[0] if len(inputs) == 1 else [],
        [dims(o) for o in model.graph.output],
    )


def family_of(weights: Path) -> str:
    if weights.is_dir() or weights.suffix in (".xml", ".pt", ".pth"):
        return "ultralytics"
    if weights.suffix == ".tflite":
        return "yolov8-tflite"
    if weights.suffix == ".onnx":
        graph = onnx_graph(weights)
        if graph.ultralytics:
            return "ultralytics"
        if graph.yolox:
            return "yolox"
        raise UnsupportedWeights(
            f"{weights}: cannot tell this ONNX's model family: no ultralytics `names` metadata "
            "and not a YOLOX head (one 1×N×(5+classes) output, one row per grid cell of strides "
            f"8/16/32; input {graph.input_shape}, outputs {graph.output_shapes}); set "
            "detect.family if it is one of those"
        )
    raise UnsupportedWeights(
        f"{weights}: unsupported weights (expected .pt, .onnx, .tflite or an OpenVINO folder)"
    )


def load_backend(
    weights: str | Path,
    family: str | None = None,
    runtime: str = "auto",
    imgsz: int = 640,
    *,
    threads: int | None = None,
    names: Mapping[int, str] | None = None,
) -> Backend:
    """The backend for `weights`; `names` replaces class names the file lacks (YOLOX)."""
    weights = Path(weights)
    if not weights.exists():
        raise FileNotFoundError(f"detector weights not found: {weights}")
    if family is not None and family not in FAMILIES:
        raise UnsupportedWeights(f"{weights}: unknown family {family!r} (one of {FAMILIES})")
    if runtime not in RUNTIMES:
        raise UnsupportedWeights(f"{weights}: unknown runtime {runtime!r} (one of {RUNTIMES})")
    family = family or family_of(weights)
    if family == "ultralytics":
        from detectors.backends.ultralytics_backend import UltralyticsBackend

        return UltralyticsBackend(weights, runtime=runtime, imgsz=imgsz)
    if family == "yolox":
        from detectors.backends.yolox import YoloxBackend

        if weights.is_dir() or weights.suffix != ".onnx":
            raise UnsupportedWeights(f"{weights}: a YOLOX model is read from its .onnx export")
        graph = onnx_graph(weights)
        if not graph.yolox:
            raise UnsupportedWeights(
                f"{weights}: not a YOLOX head (one 1×N×(5+classes) output, one row per grid "
                f"cell of strides 8/16/32); input {graph.input_shape}, outputs "
                f"{graph.output_shapes}"
            )
        return YoloxBackend(
            weights,
            runtime=runtime,
            threads=threads,
            names=names,
            input_shape=graph.input_shape,
            outputs=graph.output_shapes[0][2],
        )
    from detectors.backends.yolov8_tflite import YoloV8TfliteBackend

    if weights.is_dir() or weights.suffix != ".tflite":
        raise UnsupportedWeights(f"{weights}: a YOLOv8 TFLite model is a .tflite file")
    return YoloV8TfliteBackend(weights, runtime=runtime, threads=threads, names=names)
