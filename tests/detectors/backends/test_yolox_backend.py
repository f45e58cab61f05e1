"""YOLOX-Nano (ONNX, 416) on real pixels, on each runtime that reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.backends import load_backend
from detectors.backends.yolox import YoloxBackend, grids
from detectors.coco import coco_names
from tests.detectors.backends.scenes import (
    BICYCLE,
    CYCLIST_FRAMES,
    CYCLIST_X,
    PICKUP,
    finds,
    left_of,
    named,
    right_of,
)

VEHICLE = {"car", "truck", "bus"}


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def yolox(request: pytest.FixtureRequest, yolox_nano: Path) -> YoloxBackend:
    backend = load_backend(yolox_nano, runtime=request.param, threads=1)
    assert isinstance(backend, YoloxBackend)
    return backend


def test_the_file_is_told_and_named_coco(yolox: YoloxBackend) -> None:
    assert (yolox.family, yolox.imgsz, yolox.dynamic) == ("yolox", 416, False)
    assert yolox.names == coco_names()  # the ONNX carries no names: COCO-80 by default


def test_grids_follow_yoloxs_order() -> None:
    cells, strides = grids(416)
    assert len(cells) == 52 * 52 + 26 * 26 + 13 * 13 == 3549
    assert cells[:2].tolist() == [[0, 0], [1, 0]] and cells[52].tolist() == [0, 1]
    assert strides[2703, 0] == 8 and strides[2704, 0] == 16 and strides[-1, 0] == 32
    assert cells[-1].tolist() == [12, 12]


def test_finds_the_bicycle_and_the_pickup_in_dog_jpg(yolox: YoloxBackend, dog: np.ndarray) -> None:
    found = named(yolox.detect(dog, conf=0.3, iou=0.5), yolox.names)
    assert finds(found, {"bicycle"}, BICYCLE)
    assert finds(found, VEHICLE, PICKUP)  # YOLOX calls the pickup a car (0.80) and a truck (0.31)
    assert all(0 <= b[0] < b[2] <= 768 and 0 <= b[1] < b[3] <= 576 for _, _, b in found)


def test_finds_the_car_and_the_cyclist_in_the_intel_clip(
    yolox: YoloxBackend, clip: list[np.ndarray]
) -> None:
    """Seen from above at 416, YOLOX-Nano finds the car in every frame and the cyclist's rider
    (a person) in some; the bicycle itself it hardly ever finds (YOLOv8n does)."""
    found = [named(yolox.detect(clip[i], conf=0.3, iou=0.5), yolox.names) for i in CYCLIST_FRAMES]
    assert all(left_of(f, VEHICLE, CYCLIST_X) for f in found)
    assert sum(right_of(f, {"person", "bicycle"}, CYCLIST_X) for f in found) >= 3  # 5 of 17
