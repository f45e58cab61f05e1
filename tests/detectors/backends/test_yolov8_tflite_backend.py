"""YOLOv8n full-integer TFLite on real pixels, on LiteRT and OpenVINO; names from the file."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from detectors.backends import load_backend
from detectors.backends.tflite_metadata import metadata
from detectors.backends.yolov8_tflite import YoloV8TfliteBackend
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


@pytest.fixture(scope="module", params=["litert", "openvino"])
def v8_640(request: pytest.FixtureRequest, yolov8n_640: Path) -> YoloV8TfliteBackend:
    backend = load_backend(yolov8n_640, runtime=request.param, threads=1)
    assert isinstance(backend, YoloV8TfliteBackend)
    return backend


def test_names_and_input_come_from_the_file(v8_640: YoloV8TfliteBackend, yolov8n_640) -> None:
    assert (v8_640.family, v8_640.imgsz, v8_640.dynamic) == ("yolov8-tflite", 640, False)
    meta = metadata(yolov8n_640)
    assert meta["imgsz"] == [640, 640] and "YOLOv8n" in meta["description"]
    assert v8_640.names == coco_names()


def with_metadata(source: Path, target: Path, member: bytes | None) -> Path:
    """`source`'s model with its embedded metadata replaced by `member` (None: removed)."""
    with zipfile.ZipFile(source) as archive:
        model_end = archive.infolist()[0].header_offset
    data = source.read_bytes()[:model_end]
    target.write_bytes(data)
    if member is not None:
        with zipfile.ZipFile(target, "a") as archive:
            archive.writestr("metadata.json", member)
    return target


def test_names_are_read_from_the_files_metadata(yolov8n_416: Path, tmp_path: Path) -> None:
    names = {i: f"thing {i}" for i in range(80)} | {0: "pedestrian"}
    member = json.dumps({"names": {str(k): v for k, v in names.items()}}).encode()
    relabelled = with_metadata(yolov8n_416, tmp_path / "relabelled.tflite", member)
    assert load_backend(relabelled).names == names
    bare = with_metadata(yolov8n_416, tmp_path / "bare.tflite", None)
    assert metadata(bare) == {}
    assert load_backend(bare).names == coco_names()  # 80 class scores and no names: COCO-80


def test_finds_the_bicycle_and_the_pickup_in_dog_jpg(
    v8_640: YoloV8TfliteBackend, yolov8n_416: Path, dog: np.ndarray
) -> None:
    for backend in (v8_640, load_backend(yolov8n_416, threads=1)):
        found = named(backend.detect(dog, conf=0.3, iou=0.5), backend.names)
        assert finds(found, {"bicycle"}, BICYCLE), backend.imgsz
        assert finds(found, {"car", "truck"}, PICKUP), backend.imgsz


def test_finds_the_car_and_the_cyclist_in_the_intel_clip(
    v8_640: YoloV8TfliteBackend, clip: list[np.ndarray]
) -> None:
    found = [named(v8_640.detect(clip[i], conf=0.3, iou=0.5), v8_640.names) for i in CYCLIST_FRAMES]
    assert all(left_of(f, {"car"}, CYCLIST_X) for f in found)
    assert sum(right_of(f, {"bicycle"}, CYCLIST_X) for f in found) >= len(found) // 2
    assert sum(right_of(f, {"person"}, CYCLIST_X) for f in found) >= len(found) // 2
