from __future__ import annotations

import subprocess
import sys

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.torchvision_compat import nms


def reference_nms(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    def iou(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


box = st.tuples(
    st.integers(0, 200), st.integers(0, 200), st.integers(1, 80), st.integers(1, 80)
).map(lambda t: [float(t[0]), float(t[1]), float(t[0] + t[2]), float(t[1] + t[3])])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(box, st.integers(0, 10_000)), max_size=30, unique_by=lambda t: t[1]),
    st.sampled_from([0.3, 0.5, 0.7]),
)
def test_pure_torch_nms_matches_the_definition(items: list, threshold: float) -> None:
    boxes = [b for b, _ in items]
    scores = [s / 10_000 for _, s in items]
    kept = nms(torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), threshold)
    assert kept.tolist() == reference_nms(boxes, scores, threshold)


RUN = """
import torch
from detectors.torchvision_compat import ensure_torchvision_ops
state = ensure_torchvision_ops()
import torchvision
from torchvision.ops import batched_nms, nms
b = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float)
s = torch.tensor([0.9, 0.8, 0.7])
print(state, nms(b, s, 0.5).tolist(), batched_nms(b, s, torch.tensor([0, 1, 0]), 0.5).tolist())
"""


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_torchvision_imports_and_its_nms_works_after_the_repair() -> None:
    state, *result = python(RUN).split(" ", 1)
    assert state in ("native", "fallback")
    assert result == ["[0, 2] [0, 1, 2]"]


def test_nothing_is_changed_when_torchvision_ops_exist() -> None:
    code = (
        "import torch\n"
        "lib = torch.library.Library('torchvision', 'DEF')\n"
        "lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "from detectors import torchvision_compat as c\n"
        "print(c.ensure_torchvision_ops(), c._library is None)\n"
    )
    assert python(code) == "native True"
