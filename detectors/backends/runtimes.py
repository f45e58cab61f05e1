"""The inference engines a backend runs its model on, behind one call: tensor in, first
output out.

OpenVINO reads ONNX and TFLite directly; onnxruntime runs ONNX; LiteRT (`ai-edge-litert`,
XNNPACK) runs TFLite. Which is fastest per family is measured, not assumed (see yolox.py and
yolov8_tflite.py). Threads default to the CPUs this process may run on, so a process pinned
to one core (the benchmark's capacity phase) runs each model on one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from detectors.backends.base import UnsupportedWeights

Session = Callable[[np.ndarray], np.ndarray]


def default_threads() -> int:
    return len(os.sched_getaffinity(0))


@cache
def _openvino_core() -> Any:
    import openvino

    return openvino.Core()


def openvino_session(weights: Path, threads: int | None = None) -> Session:
    """f32 inference: on CPUs with bf16 OpenVINO otherwise computes in bf16 by default, which
    here moved YOLOX scores by up to 0.2 and lost boxes against onnxruntime."""
    try:
        compiled = _openvino_core().compile_model(
            str(weights),
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads or default_threads(),
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32",
            },
        )
    except RuntimeError as error:
        raise UnsupportedWeights(f"{weights}: OpenVINO cannot read it: {error}") from error
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(tensor: np.ndarray) -> np.ndarray:
        return request.infer({0: tensor})[output]

    return run


def onnxruntime_session(weights: Path, threads: int | None = None) -> Session:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(
            str(weights), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise UnsupportedWeights(f"{weights}: onnxruntime cannot read it: {error}") from error
    name = session.get_inputs()[0].name

    def run(tensor: np.ndarray) -> np.ndarray:
        return session.run(None, {name: tensor})[0]

    return run


def litert_interpreter(weights: Path, threads: int | None = None) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(str(weights), num_threads=threads or default_threads())
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise UnsupportedWeights(
            f"{weights}: not a TFLite model LiteRT can run: {error}"
        ) from error
    return interpreter


def litert_session(interpreter: Any) -> Session:
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def run(tensor: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source, tensor)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return run
