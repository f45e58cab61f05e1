"""Quantising the input and dequantising the output with the real tensors' parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.backends import load_backend
from detectors.backends.yolov8_tflite import Quantisation, YoloV8TfliteBackend, decode


@pytest.fixture(scope="module")
def v8(yolov8n_640: Path) -> YoloV8TfliteBackend:
    backend = load_backend(yolov8n_640, runtime="litert", threads=1)
    assert isinstance(backend, YoloV8TfliteBackend)
    return backend


def test_the_files_tensor_parameters(v8: YoloV8TfliteBackend) -> None:
    assert v8.input_dtype == np.int8
    assert v8.input_quant.scale == pytest.approx(1 / 255) and v8.input_quant.zero_point == -128
    assert v8.output_quant.scale == pytest.approx(0.0039063, rel=1e-4)
    assert v8.output_quant.zero_point == -128


def test_pixels_quantise_to_the_int8_range(v8: YoloV8TfliteBackend, dog: np.ndarray) -> None:
    lut = v8.lut
    assert lut is not None and lut.dtype == np.int8
    assert (lut[0], lut[114], lut[255]) == (-128, -14, 127)
    assert (np.diff(lut.astype(int)) == 1).all()
    tensor, box = v8.prepare(dog)
    assert tensor.shape == (1, 640, 640, 3) and tensor.dtype == np.int8
    assert (box.pad_x, box.pad_y) == (0, 80)  # 768×576 → 640×480, centred
    assert (tensor[0, :80] == -14).all() and (tensor[0, 560:] == -14).all()  # grey 114 pads
    rgb = dog[0, 0, ::-1].astype(int)
    assert np.abs(tensor[0, 80, 0].astype(int) - (rgb - 128)).max() <= 8  # resized pixel


def test_output_dequantises_with_the_zero_point_and_scale(v8: YoloV8TfliteBackend) -> None:
    quant = v8.output_quant
    assert quant.dequantise(np.array([-128, 127], np.int8)).tolist() == pytest.approx(
        [0.0, 255 * quant.scale]
    )
    for conf in (0.1, 0.25, 0.35, 0.5, 0.9):
        q = np.arange(-128, 128).astype(np.int8)
        assert ((q >= quant.quantise(conf, np.int8)) == (quant.dequantise(q) >= conf)).all()


def test_decode_reads_boxes_and_scores_from_the_int8_output(v8: YoloV8TfliteBackend) -> None:
    """One column holding a box at (0.5, 0.25) of the input, 0.1 × 0.2 of it, class 2 at 0.8;
    every other column scores nothing."""
    quant: Quantisation = v8.output_quant

    def q(real: float) -> int:
        return round(real / quant.scale + quant.zero_point)

    output = np.full((1, 84, 8400), quant.zero_point, np.int8)
    output[0, :4, 5] = [q(0.5), q(0.25), q(0.1), q(0.2)]
    output[0, 4 + 2, 5] = q(0.8)
    output[0, 4 + 7, 5] = q(0.3)
    xyxy, scores, class_ids = decode(output, quant, 640, conf=0.5)
    assert class_ids.tolist() == [2]
    assert scores[0] == pytest.approx(0.8, abs=quant.scale)
    assert xyxy[0] == pytest.approx([288, 96, 352, 224], abs=640 * quant.scale)
