"""The hand-labelled ground truth (bench/labels/) is well formed: known clips and classes,
boxes inside their frames, frame indices the clip has. No model runs here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from bench.labelkit import CLASSES, CLIPS, MIN_SIDE, LabelFile, clip_path, frame_count, label_files

FILES = label_files()


def test_the_ground_truth_covers_enough_frames_and_every_class() -> None:
    labels = [LabelFile.load(path) for path in FILES]
    assert {path.stem for path in FILES} == set(CLIPS)
    assert sum(len(file.frames) for file in labels) >= 150
    seen = {box.cls for file in labels for frame in file.frames for box in frame.boxes}
    assert seen == set(CLASSES)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_label_file_shape(path: Path) -> None:
    raw = json.loads(path.read_text())
    assert set(raw) == {"clip", "width", "height", "frames"}
    assert all(set(frame) == {"frame", "boxes", "ignore"} for frame in raw["frames"])
    labels = LabelFile.load(path)
    assert labels.clip == CLIPS[path.stem]
    indices = [frame.index for frame in labels.frames]
    assert indices == sorted(set(indices)) and indices[0] >= 0

    def inside(xyxy: tuple[float, ...]) -> bool:
        x1, y1, x2, y2 = xyxy
        return 0 <= x1 < x2 <= labels.width and 0 <= y1 < y2 <= labels.height

    for frame in labels.frames:
        for box in frame.boxes:
            where = f"{path.name} frame {frame.index} {box}"
            assert box.cls in CLASSES, where
            assert inside(box.xyxy), where
            x1, y1, x2, y2 = box.xyxy
            assert min(x2 - x1, y2 - y1) >= MIN_SIDE, f"{where}: smaller ones are ignore regions"
        for region in frame.ignore:
            assert inside(region), f"{path.name} frame {frame.index} ignore {region}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_labelled_frames_exist_in_the_clip(path: Path) -> None:
    labels = LabelFile.load(path)
    clip = clip_path(labels.clip)
    if clip is None:
        pytest.skip(f"{labels.clip} absent: the shared assets or `make footage`")
    assert max(frame.index for frame in labels.frames) < frame_count(clip)
    if clip.suffix == ".jpg":
        height, width = cv2.imread(str(clip)).shape[:2]
    else:
        capture = cv2.VideoCapture(str(clip))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
    assert (width, height) == (labels.width, labels.height)
