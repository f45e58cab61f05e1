from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.quantize import calibration_frames, preprocess


def test_calibration_frames_spread_over_the_video(vtest: Path) -> None:
    frames = calibration_frames(vtest, count=20)
    assert len(frames) == 20
    assert all(f.shape == (576, 768, 3) for f in frames)
    assert not np.array_equal(frames[0], frames[-1])


def test_preprocess_letterboxes_like_ultralytics() -> None:
    image = np.zeros((576, 768, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    tensor = preprocess(image, 640)
    assert tensor.shape == (1, 3, 480, 640) and tensor.dtype == np.float32
    assert tensor[0, 0].max() == pytest.approx(1.0) and tensor[0, 2].max() == 0.0  # RGB order


def test_unreadable_video_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        calibration_frames(tmp_path / "missing.avi")
