"""Letterboxing a frame into a square input and mapping boxes back."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.backends.letterbox import PAD, letterbox


@pytest.mark.parametrize("centre", [True, False])
@pytest.mark.parametrize(("width", "height"), [(768, 576), (480, 270), (100, 300), (416, 416)])
def test_boxes_round_trip_and_the_frame_lands_where_said(
    width: int, height: int, centre: bool
) -> None:
    rng = np.random.default_rng(width * height)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    canvas, box = letterbox(image, 416, centre=centre)
    assert canvas.shape == (416, 416, 3)
    if not centre:
        assert (box.pad_x, box.pad_y) == (0, 0)
    inner_w, inner_h = round(width * box.scale_x), round(height * box.scale_y)
    assert max(inner_w, inner_h) == 416
    assert box.pad_x + inner_w <= 416 and box.pad_y + inner_h <= 416
    if centre:
        assert abs(box.pad_x - (416 - box.pad_x - inner_w)) <= 1
        assert abs(box.pad_y - (416 - box.pad_y - inner_h)) <= 1
    grey = np.ones((416, 416), bool)
    grey[box.pad_y : box.pad_y + inner_h, box.pad_x : box.pad_x + inner_w] = False
    assert (canvas[grey] == PAD).all()
    frame_boxes = np.array([[0, 0, width, height], [10, 20, 60, 90]], np.float32)
    back = box.to_frame(box.to_input(frame_boxes))
    assert back == pytest.approx(frame_boxes, abs=1e-3)
    corners = box.to_input(frame_boxes[:1])[0]
    assert corners == pytest.approx(
        [box.pad_x, box.pad_y, box.pad_x + inner_w, box.pad_y + inner_h], abs=1e-3
    )


def test_boxes_outside_the_frame_are_clipped_to_it() -> None:
    _, box = letterbox(np.zeros((270, 480, 3), np.uint8), 416, centre=True)
    out = box.to_frame(np.array([[-5, 0, 420, 416]], np.float32))
    assert out.tolist() == [[0, 0, 480, 270]]
