from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely

from detectors.backends import UnsupportedWeights
from detectors.detections import box_iou
from detectors.yolo import Detections, YoloDetector, pack

PERSON_CLASSES = {"Normal": "person", "Fall": "person"}


def people(detections: Detections) -> int:
    return sum(1 for s in detections.subjects if s == "person")


@pytest.mark.parametrize(
    ("weights", "backend"),
    [("person_pt", "ultralytics/pytorch"), ("person_onnx", "ultralytics/onnxruntime")],
)
def test_finds_the_people_in_bus_jpg(weights: str, backend: str, request, assets: Path) -> None:
    path = request.getfixturevalue(weights)
    detector = YoloDetector(path, imgsz=640, conf=0.4, classes=PERSON_CLASSES)
    assert detector.backend == backend
    detections = detector.detect(cv2.imread(str(assets / "bus.jpg")))
    assert 3 <= people(detections) <= 6  # four people stand by the bus
    assert set(detections.subjects) == {"person"}
    assert (detections.conf >= 0.4).all()
    x1, y1, x2, y2 = detections.xyxy.T
    assert (x2 > x1).all() and (y2 > y1).all() and (x2 <= 810).all() and (y2 <= 1080).all()


def test_region_detection_returns_full_frame_boxes(person_pt: Path, assets: Path) -> None:
    detector = YoloDetector(person_pt, imgsz=640, conf=0.4, classes=PERSON_CLASSES)
    image = cv2.imread(str(assets / "bus.jpg"))
    everything = detector.detect(image)
    left = min(everything.xyxy, key=lambda b: b[0])
    region = (0, 300, int(left[2]) + 60, 1080)
    inside = detector.detect(image, region)
    assert len(inside) >= 1
    best = inside.xyxy[inside.conf.argmax()]
    assert box_iou(best[None], left[None])[0, 0] > 0.6  # same person, same place
    assert (inside.xyxy[:, 0] >= 0).all() and (inside.xyxy[:, 2] <= region[2] + 1).all()


def test_unknown_classes_and_weights_are_clear_errors(person_pt: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"classes \['bicycle'\] are not in the model"):
        YoloDetector(person_pt, classes={"bicycle": "bicycle"})
    with pytest.raises(FileNotFoundError, match="weights not found"):
        YoloDetector(tmp_path / "missing.pt")
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(UnsupportedWeights, match=r"model\.bin: unsupported weights"):
        YoloDetector(tmp_path / "model.bin")


def test_regions_are_packed_without_overlap_and_copied() -> None:
    image = np.arange(576 * 768 * 3, dtype=np.uint32).reshape(576, 768, 3).astype(np.uint8)
    regions = [(0, 0, 100, 300), (500, 100, 760, 200), (300, 400, 420, 570)]
    mosaic, cells = pack(image, regions)
    boxes = [shapely.box(x, y, x + w, y + h) for (x, y, w, h), _ in cells]
    assert all(not a.intersects(b) for a, b in itertools.combinations(boxes, 2))
    for (x, y, w, h), (x0, y0, x1, y1) in cells:
        assert (mosaic[y : y + h, x : x + w] == image[y0:y1, x0:x1]).all()
    assert mosaic.size < image.size


def test_mosaic_detection_finds_people_in_several_regions(person_pt: Path, assets: Path) -> None:
    detector = YoloDetector(person_pt, imgsz=640, conf=0.4, classes=PERSON_CLASSES)
    image = cv2.imread(str(assets / "bus.jpg"))
    everything = detector.detect(image)
    regions = [
        (
            max(0, int(x1) - 30),
            max(0, int(y1) - 30),
            min(810, int(x2) + 30),
            min(1080, int(y2) + 30),
        )
        for x1, y1, x2, y2 in sorted(everything.xyxy.tolist())[:2]
    ]
    if regions[0][2] > regions[1][0]:
        regions = [regions[0]]
    packed = detector.detect_regions(image, regions)
    ious = box_iou(packed.xyxy, everything.xyxy)
    assert len(packed) >= len(regions) and (ious.max(axis=1) > 0.6).sum() >= len(regions)
