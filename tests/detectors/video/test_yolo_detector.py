from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from detectors.camera import iou_matrix
from detectors.yolo import Detections, YoloDetector, backend_of

PERSON_CLASSES = {"Normal": "person", "Fall": "person"}


def people(detections: Detections) -> int:
    return sum(1 for s in detections.subjects if s == "person")


@pytest.mark.parametrize("weights", ["person_pt", "person_onnx"])
def test_finds_the_people_in_bus_jpg(weights: str, request, assets: Path) -> None:
    path = request.getfixturevalue(weights)
    detector = YoloDetector(path, imgsz=640, conf=0.4, classes=PERSON_CLASSES)
    assert detector.backend == backend_of(path)
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
    assert iou_matrix(best[None], left[None])[0, 0] > 0.6  # same person, same place
    assert (inside.xyxy[:, 0] >= 0).all() and (inside.xyxy[:, 2] <= region[2] + 1).all()


def test_unknown_classes_and_weights_are_clear_errors(person_pt: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"classes \['bicycle'\] are not in the model"):
        YoloDetector(person_pt, classes={"bicycle": "bicycle"})
    with pytest.raises(FileNotFoundError, match="weights not found"):
        YoloDetector(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unsupported weights"):
        backend_of(Path("model.tflite"))
