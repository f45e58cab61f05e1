from __future__ import annotations

import numpy as np

from detectors.motion import MotionGate, merge_boxes
from ingest.config import MotionGate as MotionSettings


def scene(x: int) -> np.ndarray:
    image = np.full((576, 768, 3), 90, np.uint8)
    image[300:400, x : x + 60] = 230  # a bright "person" 60×100 px
    return image


def test_first_frame_counts_as_moved_everywhere_then_still_frames_do_not() -> None:
    gate = MotionGate(MotionSettings())
    assert gate.regions(scene(100)) == [(0, 0, 768, 576)]
    assert gate.regions(scene(100)) == []
    noisy = scene(100).astype(np.int16) + np.random.default_rng(1).integers(-4, 5, (576, 768, 3))
    assert gate.regions(noisy.clip(0, 255).astype(np.uint8)) == []  # sensor noise is not motion


def test_a_moving_subject_gives_one_region_around_it() -> None:
    gate = MotionGate(MotionSettings())
    gate.regions(scene(100))
    regions = gate.regions(scene(130))
    assert len(regions) == 1
    x1, y1, x2, y2 = regions[0]
    assert x1 <= 100 and x2 >= 190 and y1 <= 300 and y2 >= 400
    assert (x2 - x1) * (y2 - y1) < 768 * 576 / 8


def test_small_changes_below_min_area_are_ignored() -> None:
    gate = MotionGate(MotionSettings(min_area_px=5000))
    gate.regions(scene(100))
    assert gate.regions(scene(104)) == []


def test_overlapping_boxes_merge() -> None:
    assert merge_boxes([(0, 0, 10, 10), (5, 5, 20, 20), (30, 30, 40, 40)]) == [
        (0, 0, 20, 20),
        (30, 30, 40, 40),
    ]
    assert merge_boxes([(0, 0, 10, 10), (20, 0, 30, 10), (5, 0, 25, 5)]) == [(0, 0, 30, 10)]
