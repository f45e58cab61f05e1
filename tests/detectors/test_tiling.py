"""Tiled inference (detectors/tiling.py): the tile grid and the merge on their own, then the
real model on real pixels: kite.jpg's distant people, a 4× upscale of a vtest.avi frame (the
same subjects, once each across seams), and the motion gate's regions choosing the tiles.

The model is COCO YOLOX-Nano once `YoloDetector` takes `family="yolox"` (the backend
refactor), else the person model `make footage` installs; assertions hold for either.
"""

from __future__ import annotations

import inspect

import cv2
import numpy as np
import pytest

from detectors.assets import REPO, asset
from detectors.detections import Detections
from detectors.tiling import Plan, Seen, TiledDetector, axis_starts, cut_sides, merge, tile_grid
from detectors.yolo import YoloDetector
from ingest.config import Tiling
from tests.assets import debian_still

PERSON_PT = REPO / "var" / "models" / "person-yolov8s.pt"
VTEST = REPO / "var" / "footage" / "vtest.avi"
CONF = 0.3

KITE_PEOPLE = np.array(
    [
        (112, 608, 167, 763),
        (215, 696, 273, 859),
        (22, 527, 38, 557),
        (37, 511, 56, 562),
        (81, 506, 109, 567),
        (96, 538, 109, 566),
        (177, 540, 194, 573),
        (346, 487, 358, 505),
        (519, 503, 536, 531),
        (537, 515, 556, 534),
        (694, 461, 703, 472),
        (1205, 452, 1215, 464),
    ],
    np.float32,
)
"""The 12 people in kite.jpg, boxed by hand: two close by, the rest 9 to 60 px tall."""

VTEST_PEOPLE = np.array(
    [(252, 219, 283, 308), (500, 157, 531, 233), (638, 240, 685, 323)], np.float32
)
"""The three people walking in vtest.avi's first frame, boxed by hand."""


@pytest.fixture(scope="module")
def detector() -> YoloDetector:
    yolox = asset("models/yolox_nano.onnx")
    if yolox is not None and "family" in inspect.signature(YoloDetector).parameters:
        return YoloDetector(yolox, family="yolox", conf=CONF, classes={"person": "person"})
    if not PERSON_PT.is_file():
        pytest.skip(f"{PERSON_PT} missing: run `make footage`")
    return YoloDetector(PERSON_PT, conf=CONF, classes={"Normal": "person", "Fall": "person"})


@pytest.fixture(scope="module")
def vtest_frame() -> np.ndarray:
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} missing: run `make footage`")
    capture = cv2.VideoCapture(str(VTEST))
    ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


def detections(boxes, conf, subjects) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(conf, np.float32),
        np.zeros(len(conf), int),
        tuple(subjects),
    )


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None] - inter)


def people_found(xyxy: np.ndarray, people: np.ndarray) -> set[int]:
    """Which hand-boxed people some box finds: it holds their centre, at most 4× their size
    either way (so a box over a whole tile finds nobody); each box finds the nearest one."""
    centres = (people[:, :2] + people[:, 2:]) / 2
    areas = np.prod(people[:, 2:] - people[:, :2], axis=1)
    found = set()
    for box in xyxy:
        area = np.prod(box[2:] - box[:2])
        inside = np.all((centres >= box[:2]) & (centres <= box[2:]), axis=1)
        fits = (area <= 4 * areas) & (area >= areas / 4)
        candidates = np.nonzero(inside & fits)[0]
        if len(candidates):
            distance = np.linalg.norm(centres[candidates] - (box[:2] + box[2:]) / 2, axis=1)
            found.add(int(candidates[np.argmin(distance)]))
    return found


def distinct(found: Detections) -> np.ndarray:
    """The whole-frame boxes, one per subject (the person model reports a standing person as
    both of its classes)."""
    order = np.argsort(-found.conf)
    kept: list[int] = []
    for i in order:
        if not kept or iou(found.xyxy[[i]], found.xyxy[kept]).max() < 0.7:
            kept.append(int(i))
    return found.xyxy[kept]


def inside_some_tile(box: np.ndarray, tiles: list[tuple[int, int, int, int]]) -> bool:
    return any(
        t[0] <= box[0] and t[1] <= box[1] and box[2] <= t[2] and box[3] <= t[3] for t in tiles
    )


# ---- the tile grid --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [641, 1000, 1352, 2304, 3072, 12000])
@pytest.mark.parametrize("overlap", [0.0, 0.2, 0.5])
def test_axis_starts_cover_the_axis_with_at_least_the_overlap(length: int, overlap: float):
    tile = 640
    starts = axis_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts[-1] + tile == length
    gaps = np.diff(starts)
    assert (gaps > 0).all()
    assert (tile - gaps >= overlap * tile - 1).all()
    assert len(axis_starts(length, tile, overlap)) == len(starts)


def test_axis_shorter_than_a_tile_is_one_tile():
    assert axis_starts(640, 640, 0.2) == [0]
    assert axis_starts(300, 640, 0.2) == [0]


@pytest.mark.parametrize(("width", "height"), [(3072, 2304), (12000, 2000), (5000, 500)])
def test_tile_grid_covers_the_frame_exactly(width: int, height: int):
    tiles = tile_grid(width, height, 640, 0.2)
    covered = np.zeros((height, width), np.uint8)
    for x1, y1, x2, y2 in tiles:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert (x2 - x1, y2 - y1) == (min(640, width), min(640, height))
        covered[y1:y2, x1:x2] = 1
    assert covered.all()
    assert {t[2] for t in tiles} >= {width} and {t[3] for t in tiles} >= {height}


def test_frame_edges_are_not_seams():
    frame = (2000, 1000)
    box = np.array([[0, 10, 50, 640], [590, 0, 640, 100]], np.float32)
    cut = cut_sides(box, (0, 0, 640, 640), frame)
    assert cut.tolist() == [[False, False, False, True], [False, False, True, False]]


# ---- the merge --------------------------------------------------------------------------------

FRAME = (2000, 1000)
LEFT = (0, 0, 640, 640)
RIGHT = (512, 0, 1152, 640)
FAR_RIGHT = (1024, 0, 1664, 640)
BELOW = (0, 512, 640, 1000)


def test_a_box_split_on_a_seam_becomes_one():
    """A subject wider than the overlap: each tile sees the part on its side of the seam."""
    left = detections([[400, 100, 640, 300]], [0.8], ["person"])
    right = detections([[512, 104, 760, 296]], [0.7], ["person"])
    merged = merge([Seen(left, LEFT), Seen(right, RIGHT)], FRAME)
    assert len(merged) == 1
    assert merged.xyxy[0].tolist() == [400, 100, 760, 300]
    assert merged.conf[0] == pytest.approx(0.8)


def test_a_split_box_joins_up_across_a_horizontal_seam():
    above = detections([[100, 500, 180, 640]], [0.6], ["person"])
    below = detections([[102, 512, 178, 700]], [0.9], ["person"])
    merged = merge([Seen(above, LEFT), Seen(below, BELOW)], FRAME)
    assert merged.xyxy.tolist() == [[100, 500, 180, 700]]


def test_a_fragment_joins_the_whole_subject_the_next_tile_sees():
    whole = detections([[500, 100, 600, 300]], [0.6], ["person"])
    fragment = detections([[512, 100, 600, 300]], [0.9], ["person"])
    merged = merge([Seen(whole, LEFT), Seen(fragment, RIGHT)], FRAME)
    assert merged.xyxy.tolist() == [[500, 100, 600, 300]]


def test_a_subject_over_three_tiles_becomes_one_whatever_piece_is_surest():
    pieces = [
        Seen(detections([[300, 100, 640, 300]], [0.9], ["truck"]), LEFT),
        Seen(detections([[512, 100, 1152, 300]], [0.5], ["truck"]), RIGHT),
        Seen(detections([[1024, 100, 1300, 300]], [0.6], ["truck"]), FAR_RIGHT),
    ]
    merged = merge(pieces, FRAME)
    assert merged.xyxy.tolist() == [[300, 100, 1300, 300]]
    assert merged.subjects == ("truck",)


def test_whole_duplicates_from_overlapping_tiles_are_kept_once():
    left = detections([[550, 200, 590, 300]], [0.7], ["person"])
    right = detections([[552, 198, 591, 302]], [0.8], ["person"])
    merged = merge([Seen(left, LEFT), Seen(right, RIGHT)], FRAME)
    assert merged.xyxy.tolist() == [[552, 198, 591, 302]]


def test_neighbours_cut_by_nothing_stay_apart():
    """Two people side by side: one box mostly inside the other, neither cut by a seam."""
    one = detections([[100, 100, 140, 200]], [0.7], ["person"])
    other = detections([[120, 110, 150, 190]], [0.6], ["person"])
    assert len(merge([Seen(one, LEFT), Seen(other, (0, 64, 640, 704))], FRAME)) == 2


def test_merge_is_class_aware():
    left = detections([[400, 100, 640, 300]], [0.8], ["person"])
    right = detections([[512, 100, 760, 300], [520, 100, 600, 300]], [0.7, 0.6], ["car", "bicycle"])
    merged = merge([Seen(left, LEFT), Seen(right, RIGHT)], FRAME)
    assert sorted(merged.subjects) == ["bicycle", "car", "person"]


def test_a_stray_box_does_not_pull_in_a_person_through_their_fragment():
    """A spurious box filling a tile holds a person's fragment; the person keeps their box."""
    person = detections([[600, 700, 660, 800], [420, 560, 640, 1000]], [0.8, 0.5], ["p", "p"])
    fragment = detections([[602, 700, 640, 800]], [0.4], ["p"])
    upper = (0, 400, 640, 1000)
    merged = merge([Seen(fragment, (600, 0, 1240, 800)), Seen(person, upper)], FRAME)
    assert [600, 700, 660, 800] in merged.xyxy.tolist()
    assert len(merged) == 2


def test_nothing_found_is_empty():
    assert len(merge([Seen(Detections.empty(), LEFT)], FRAME)) == 0


# ---- the real model on real pixels ------------------------------------------------------------


def test_small_frames_pass_straight_through(detector: YoloDetector, vtest_frame: np.ndarray):
    tiled = TiledDetector(detector, Tiling(tile_px=detector.imgsz))
    height, width = vtest_frame.shape[:2]
    assert tiled.plan(width, height) == Plan()
    direct = detector.detect(vtest_frame)
    through = tiled.detect(vtest_frame)
    np.testing.assert_array_equal(through.xyxy, direct.xyxy)
    assert tiled.stats.tile_runs == 0 and tiled.stats.passed_through == 1
    assert tiled.subject_of == detector.subject_of and tiled.imgsz == detector.imgsz
    assert tiled.dynamic == detector.dynamic


def test_tiling_disabled_passes_large_frames_through(detector: YoloDetector):
    tiled = TiledDetector(detector, Tiling(enabled=False))
    assert tiled.plan(12000, 2000) == Plan()
    assert len(TiledDetector(detector, Tiling()).plan(12000, 2000).tiles) > 0


def test_kite_tiled_finds_clearly_more_people(detector: YoloDetector):
    image = cv2.imread(str(debian_still("kite.jpg")))
    tiled = TiledDetector(detector, Tiling(tile_px=detector.imgsz))
    height, width = image.shape[:2]
    assert tiled.tiles_frame(width, height)
    whole = people_found(detector.detect(image).xyxy, KITE_PEOPLE)
    found = tiled.detect(image)
    by_tiles = people_found(found.xyxy, KITE_PEOPLE)
    assert tiled.stats.tile_runs == len(tile_grid(width, height, detector.imgsz, 0.2))
    assert len(by_tiles) >= len(whole) + 2, (whole, by_tiles)
    assert len(by_tiles) >= 1.5 * len(whole), (whole, by_tiles)
    assert set(found.subjects) == {"person"}


def _upscaled(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)


def _each_subject_once(subjects: np.ndarray, tiled: np.ndarray) -> None:
    """Every whole-frame subject is one tiled box: a good match and nothing else over it (a
    fragment left unmerged overlaps its subject by IoU 0.25 or more)."""
    overlap = iou(subjects, tiled)
    assert (overlap.max(axis=1) >= 0.5).all(), overlap.round(2)
    assert ((overlap >= 0.25).sum(axis=1) == 1).all(), overlap.round(2)


def test_a_4x_upscale_finds_the_same_subjects_once_each(
    detector: YoloDetector, vtest_frame: np.ndarray
):
    subjects = distinct(detector.detect(vtest_frame))
    assert len(subjects) >= 3
    image = _upscaled(vtest_frame)
    settings = Tiling(tile_px=detector.imgsz)
    tiled = TiledDetector(detector, settings)
    found = tiled.detect(image)
    tiles = tile_grid(image.shape[1], image.shape[0], settings.tile_px, settings.overlap)
    assert tiled.stats.tile_runs == len(tiles) and tiled.stats.full_runs == 1
    assert any(not inside_some_tile(box * 4, tiles) for box in subjects), "no subject on a seam"
    _each_subject_once(subjects, found.xyxy / 4)
    _each_subject_once(VTEST_PEOPLE, found.xyxy / 4)


def test_subjects_cut_by_seams_are_fused_from_their_pieces(
    detector: YoloDetector, vtest_frame: np.ndarray
):
    """Little overlap and no resized frame: a person taller than the overlap is whole in no
    tile, so their one box can only come from joining the pieces."""
    image = _upscaled(vtest_frame)
    settings = Tiling(tile_px=detector.imgsz, overlap=0.0, full_frame=False)
    found = TiledDetector(detector, settings).detect(image)
    tiles = tile_grid(image.shape[1], image.shape[0], settings.tile_px, settings.overlap)
    assert any(not inside_some_tile(box, tiles) for box in found.xyxy), "nothing was fused"
    _each_subject_once(VTEST_PEOPLE, found.xyxy / 4)


def test_regions_choose_the_tiles(detector: YoloDetector, vtest_frame: np.ndarray):
    image = _upscaled(vtest_frame)
    height, width = image.shape[:2]
    settings = Tiling(tile_px=detector.imgsz)
    tiled = TiledDetector(detector, settings)
    tiles = tile_grid(width, height, settings.tile_px, settings.overlap)
    walker = (1976, 608, 2148, 952)  # the man at the top centre, padded as the gate pads
    under = [t for t in tiles if t[0] < walker[2] and walker[0] < t[2] and t[1] < walker[3]]
    under = [t for t in under if walker[1] < t[3]]
    found = tiled.detect_regions(image, [walker])
    assert tiled.stats.tile_runs == len(under) < len(tiles)
    assert tiled.stats.full_runs == 0
    subjects = distinct(detector.detect(vtest_frame)) * 4
    him = subjects[[np.argmax(iou(np.array([walker], np.float32), subjects)[0])]]
    assert iou(him, found.xyxy).max() >= 0.5
    assert all(box[0] < walker[2] and walker[0] < box[2] for box in found.xyxy)

    assert len(tiled.detect_regions(image, [])) == 0
    assert tiled.stats.tile_runs == len(under)

    large = (0, 0, settings.tile_px + 1, 200)
    tiled.detect_regions(image, [large])
    assert tiled.stats.full_runs == 1
    assert tiled.stats.tile_runs == len(under) + len(tiled.plan(width, height, [large]).tiles)
