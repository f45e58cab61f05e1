"""The same model on two runtimes finds the same things in the same places."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.backends import load_backend
from tests.detectors.backends.scenes import iou, named

PAIRS = [
    ("yolox_nano", "onnxruntime", "openvino"),
    ("yolov8n_640", "litert", "openvino"),
    ("yolov8n_416", "litert", "openvino"),
]


@pytest.mark.parametrize(("model", "first", "second"), PAIRS)
def test_confident_boxes_agree_across_runtimes(
    model: str,
    first: str,
    second: str,
    request: pytest.FixtureRequest,
    dog: np.ndarray,
    clip: list[np.ndarray],
) -> None:
    """Every box one runtime scores ≥ 0.5 the other finds too: same class, IoU ≥ 0.85, score
    within 0.1 (int8 kernels round differently; float ones agree to the pixel)."""
    weights: Path = request.getfixturevalue(model)
    a, b = (load_backend(weights, runtime=r, threads=1) for r in (first, second))
    compared = 0
    for image in (dog, clip[28], clip[36]):
        found_a = named(a.detect(image, conf=0.3, iou=0.5), a.names)
        found_b = named(b.detect(image, conf=0.3, iou=0.5), b.names)
        for x, y in ((found_a, found_b), (found_b, found_a)):
            for name, score, box in x:
                if score < 0.5:
                    continue
                same = [(iou(box, other), s) for n, s, other in y if n == name]
                best = max(same, default=(0.0, 0.0))
                assert best[0] >= 0.85 and abs(best[1] - score) <= 0.1, (name, score, box, same)
                compared += 1
    assert compared >= 6
