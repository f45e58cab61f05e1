"""Real models and real pixels for the backend tests (skipped without the shared assets)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.assets import debian_still, shared_asset
from tests.detectors.backends.scenes import GIF


@pytest.fixture(scope="session")
def dog() -> np.ndarray:
    return cv2.imread(str(debian_still("dog.jpg")))


@pytest.fixture(scope="session")
def clip() -> list[np.ndarray]:
    """The 41 frames of the Intel car park clip (480×270, BGR), read by OpenCV."""
    capture = cv2.VideoCapture(str(shared_asset(GIF)))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 41
    return frames


@pytest.fixture(scope="session")
def yolox_nano() -> Path:
    return shared_asset("models/yolox_nano.onnx")


@pytest.fixture(scope="session")
def yolov8n_640() -> Path:
    return shared_asset("models/yolov8n_int8_640.tflite")


@pytest.fixture(scope="session")
def yolov8n_416() -> Path:
    return shared_asset("models/yolov8n_int8_416.tflite")
