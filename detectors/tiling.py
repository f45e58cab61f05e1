"""Tiled (sliced) inference for frames much larger than the model input.

A 24-megapixel panorama resized to a 640 input leaves a bicycle a few pixels wide. A frame whose
longer side is at least `min_scale` × the model input is cut into overlapping square tiles (a
grid covering it exactly: evenly spread, the last of a row or column ending at the frame's edge,
never padded), each detected at the model input, plus (with `full_frame`) the whole frame
resized once for subjects too large for a tile. Of the resized frame only boxes larger than the
tiles' overlap are kept: a smaller subject is whole in some tile and seen sharper there. Smaller
frames go straight to the wrapped detector.

The boxes, mapped to the full frame, are merged in two steps:

1. Seam fusion: greedy non-maximum merging (SAHI's greedy NMM, union box, highest confidence)
   restricted to seams. A box touching an inner edge of its tile was cut there. The most
   confident box left takes in, from other runs and of the same subject, every cut box lying
   mostly inside it (intersection over the smaller area) and every box cut on the facing side
   of a seam it is cut on (touching or overlapping across it, agreeing along it); its union
   grows, so a subject over three tiles joins up. Boxes cut by nothing never fuse, so
   neighbours in a crowd stay apart (unrestricted IoS merging joins them), and a box once
   taken pulls nothing more in (a stray box over a tile cannot swallow a person through that
   person's fragment).
2. Class-aware NMS (IoU, by subject) over the fused boxes: a subject seen whole in two
   overlapping tiles, or in a tile and the resized frame, is kept once.

`detect_regions` lets the motion gate choose the tiles: only tiles under a moved region run,
and the resized frame only when a region is larger than a tile.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from detectors.detections import Detections
from detectors.motion import overlaps
from ingest.config import Tiling

Box = tuple[int, int, int, int]

SEAM_MARGIN = 0.01
"""A box edge within this share of the tile's side from an inner tile edge counts as cut."""
FUSE_IOS = 0.6
"""A cut box fuses with a box holding at least this share of it (intersection over smaller)."""
FUSE_ACROSS = 0.5
"""Two boxes cut on facing sides of a seam fuse when their extents along it agree this well."""


class Detector(Protocol):
    """What the camera needs of a detector (YoloDetector and TiledDetector both are one)."""

    imgsz: int
    dynamic: bool
    subject_of: Mapping[int, str]

    def detect(self, image: np.ndarray, region: Box | None = None) -> Detections: ...

    def detect_regions(self, image: np.ndarray, regions: Sequence[Box]) -> Detections: ...


def axis_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile origins along one axis: the first at 0, the last ending at `length`, evenly spread
    so neighbours overlap by at least `overlap` of a tile (edges shifted inward, no padding)."""
    if length <= tile:
        return [0]
    stride = tile * (1.0 - overlap)
    count = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_grid(width: int, height: int, tile_px: int, overlap: float) -> list[Box]:
    """Square tiles of `tile_px` covering the frame exactly, row by row (a side shorter than a
    tile gets one tile as long as that side)."""
    tw, th = min(tile_px, width), min(tile_px, height)
    return [
        (x, y, x + tw, y + th)
        for y in axis_starts(height, tile_px, overlap)
        for x in axis_starts(width, tile_px, overlap)
    ]


@dataclass(frozen=True, slots=True)
class Seen:
    """Detections from one model run and the full-frame window that run saw."""

    found: Detections
    window: Box


def _margin(window: Box) -> float:
    return SEAM_MARGIN * max(window[2] - window[0], window[3] - window[1])


def cut_sides(xyxy: np.ndarray, window: Box, frame: tuple[int, int]) -> np.ndarray:
    """(N, 4) bool: which of left, top, right, bottom each box touches at an inner edge of its
    window (an edge that is not the frame's)."""
    width, height = frame
    x1, y1, x2, y2 = window
    margin = _margin(window)
    return np.stack(
        [
            (xyxy[:, 0] - x1 <= margin) & (x1 > 0),
            (xyxy[:, 1] - y1 <= margin) & (y1 > 0),
            (x2 - xyxy[:, 2] <= margin) & (x2 < width),
            (y2 - xyxy[:, 3] <= margin) & (y2 < height),
        ],
        axis=1,
    )


def _interval_iou(a1: float, a2: float, b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    inter = np.minimum(a2, b2) - np.maximum(a1, b1)
    span = np.maximum(a2, b2) - np.minimum(a1, b1)
    return np.where(inter > 0, inter / np.maximum(span, 1e-6), 0.0)


def _ios(box: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """Intersection of `box` with each row over the smaller of the two areas."""
    w = np.minimum(box[2], xyxy[:, 2]) - np.maximum(box[0], xyxy[:, 0])
    h = np.minimum(box[3], xyxy[:, 3]) - np.maximum(box[1], xyxy[:, 1])
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    smaller = np.minimum((box[2] - box[0]) * (box[3] - box[1]), area)
    return np.where((w > 0) & (h > 0), w * h / np.maximum(smaller, 1e-6), 0.0)


def _meets(
    box: np.ndarray, cut: np.ndarray, reach: np.ndarray, xyxy: np.ndarray, cuts: np.ndarray
) -> np.ndarray:
    """Rows that meet `box` across a seam: cut on the facing side, touching or overlapping it
    there, neither reaching past the other, their extents along the seam agreeing."""
    x1, y1, x2, y2 = xyxy.T
    along_y = _interval_iou(box[1], box[3], y1, y2) >= FUSE_ACROSS
    along_x = _interval_iou(box[0], box[2], x1, x2) >= FUSE_ACROSS
    right = cut[2] & cuts[:, 0] & (box[0] < x1) & (x1 <= box[2] + reach) & (box[2] < x2)
    left = cut[0] & cuts[:, 2] & (x1 < box[0]) & (box[0] <= x2 + reach) & (x2 < box[2])
    below = cut[3] & cuts[:, 1] & (box[1] < y1) & (y1 <= box[3] + reach) & (box[3] < y2)
    above = cut[1] & cuts[:, 3] & (y1 < box[1]) & (box[1] <= y2 + reach) & (y2 < box[3])
    return ((right | left) & along_y) | ((below | above) & along_x)


@dataclass(frozen=True, slots=True)
class _Pool:
    """Every run's boxes in one frame, with where each was cut and which run it came from."""

    xyxy: np.ndarray
    cut: np.ndarray
    margin: np.ndarray
    source: np.ndarray
    subject: np.ndarray


def _fuse(pool: _Pool, order: np.ndarray) -> list[list[int]]:
    """Seam fusion (step 1 above): groups of box indices, each group's first its surest."""
    free = np.ones(len(pool.xyxy), bool)
    groups = []
    for i in order:
        if not free[i]:
            continue
        free[i] = False
        members = [int(i)]
        box, cut = pool.xyxy[i].copy(), pool.cut[i].copy()
        while True:
            candidates = np.nonzero(
                free
                & (pool.subject == pool.subject[i])
                & ~np.isin(pool.source, pool.source[members])
            )[0]
            if not len(candidates):
                break
            reach = max(pool.margin[members])
            taken = candidates[_pieces(pool, candidates, box, cut, reach)]
            if not len(taken):
                break
            free[taken] = False
            members.extend(int(j) for j in taken)
            box = np.concatenate([pool.xyxy[members, :2].min(0), pool.xyxy[members, 2:].max(0)])
            cut = _union_cut(pool, members, box)
        groups.append(members)
    return groups


def _pieces(
    pool: _Pool, candidates: np.ndarray, box: np.ndarray, cut: np.ndarray, reach: float
) -> np.ndarray:
    """Which candidates are pieces of the subject `box` shows: the smaller of the two is cut
    and lies mostly inside the other, or the two meet across a seam."""
    xyxy, cuts = pool.xyxy[candidates], pool.cut[candidates]
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    smaller_cut = np.where(area <= (box[2] - box[0]) * (box[3] - box[1]), cuts.any(1), cut.any())
    reach = np.maximum(pool.margin[candidates], reach)
    inside = smaller_cut & (_ios(box, xyxy) >= FUSE_IOS)
    return inside | _meets(box, cut, reach, xyxy, cuts)


def _union_cut(pool: _Pool, members: list[int], box: np.ndarray) -> np.ndarray:
    """A union is cut on a side where a member cut on that side reaches the union's edge."""
    xyxy, cut, margin = pool.xyxy[members], pool.cut[members], pool.margin[members]
    at_edge = np.abs(xyxy - box) <= margin[:, None]
    return (cut & at_edge).any(axis=0)


def merge(seen: Sequence[Seen], frame: tuple[int, int], iou: float = 0.5) -> Detections:
    """Full-frame detections from tiles (and the resized frame): seam fusion, then class-aware
    NMS. `frame` is (width, height)."""
    runs = [s for s in seen if len(s.found)]
    if not runs:
        return Detections.empty()
    found = Detections.concat([s.found for s in runs])
    labels = {s: k for k, s in enumerate(dict.fromkeys(found.subjects))}
    pool = _Pool(
        found.xyxy.astype(np.float32),
        np.concatenate([cut_sides(s.found.xyxy, s.window, frame) for s in runs]),
        np.concatenate([np.full(len(s.found), _margin(s.window)) for s in runs]),
        np.concatenate([np.full(len(s.found), n) for n, s in enumerate(runs)]),
        np.array([labels[s] for s in found.subjects]),
    )
    groups = _fuse(pool, np.argsort(-found.conf, kind="stable"))
    boxes = np.array(
        [[*pool.xyxy[g, :2].min(axis=0), *pool.xyxy[g, 2:].max(axis=0)] for g in groups],
        np.float32,
    )
    best = np.array([g[0] for g in groups], int)
    keep = cv2.dnn.NMSBoxesBatched(
        [(float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])) for b in boxes],
        found.conf[best].tolist(),
        pool.subject[best].tolist(),
        0.0,
        iou,
    )
    keep = np.sort(np.asarray(keep, int).reshape(-1))
    return dataclasses.replace(found.take(best[keep]), xyxy=boxes[keep])


@dataclass(slots=True)
class TilingStats:
    """Model runs since start (tiles and resized full frames), for tests and the bench."""

    tiled_frames: int = 0
    tile_runs: int = 0
    full_runs: int = 0
    passed_through: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """The runs one call makes: tiles (full-frame boxes) and whether the resized frame runs."""

    tiles: list[Box] = field(default_factory=list)
    full: bool = False


class TiledDetector:
    """A detector in front of another: large frames by tiles, smaller ones straight through.

    Same public API as the detector it wraps (`detect`, `detect_regions`, `subject_of`,
    `imgsz`, `dynamic`, and any other attribute by delegation), so the camera can use it in
    its place.
    """

    def __init__(self, detector: Detector, settings: Tiling | None = None, *, iou: float = 0.5):
        self.detector = detector
        settings = settings or Tiling()
        if settings.tile_px is None:
            settings = settings.model_copy(update={"tile_px": detector.imgsz})
        self.settings = settings
        self.iou = iou
        self.stats = TilingStats()

    def __getattr__(self, name: str) -> Any:
        if name == "detector":
            raise AttributeError(name)
        return getattr(self.detector, name)

    @property
    def imgsz(self) -> int:
        return self.detector.imgsz

    @property
    def dynamic(self) -> bool:
        return self.detector.dynamic

    @property
    def subject_of(self) -> Mapping[int, str]:
        return self.detector.subject_of

    def tiles_frame(self, width: int, height: int) -> bool:
        """Whether a frame this size is tiled (its longer side >= min_scale × model input)."""
        settings = self.settings
        return settings.enabled and max(width, height) >= settings.min_scale * self.imgsz

    def plan(self, width: int, height: int, regions: Sequence[Box] | None = None) -> Plan:
        """Which runs a frame this size takes: every tile and the resized frame, or with
        `regions` the tiles under them and the resized frame only for a region larger than
        a tile. An empty plan for a frame that is not tiled."""
        if not self.tiles_frame(width, height):
            return Plan()
        settings = self.settings
        grid = tile_grid(width, height, settings.tile_px, settings.overlap)
        if regions is None:
            return Plan(grid, settings.full_frame)
        regions = list(regions)
        large = any(max(r[2] - r[0], r[3] - r[1]) > settings.tile_px for r in regions)
        return Plan([t for t in grid if overlaps(t, regions)], settings.full_frame and large)

    def detect(self, image: np.ndarray, region: Box | None = None) -> Detections:
        """Detect in the whole frame, or in `region` (x1, y1, x2, y2) at the frame's scale."""
        if region is not None:
            return self.detect_regions(image, [region])
        height, width = image.shape[:2]
        if not self.tiles_frame(width, height):
            self.stats.passed_through += 1
            return self.detector.detect(image)
        return self._run(image, self.plan(width, height))

    def detect_regions(self, image: np.ndarray, regions: Sequence[Box]) -> Detections:
        """Detect in the moved regions only: the tiles under them; boxes outside every region
        are dropped, as the wrapped detector would not have seen them."""
        height, width = image.shape[:2]
        if not self.tiles_frame(width, height):
            self.stats.passed_through += 1
            return self.detector.detect_regions(image, regions)
        if not regions:
            return Detections.empty()
        found = self._run(image, self.plan(width, height, regions))
        keep = [i for i, box in enumerate(found.xyxy) if overlaps(tuple(box), list(regions))]
        return found if len(keep) == len(found) else found.take(keep)

    def _large(self, found: Detections) -> Detections:
        """The resized frame's boxes larger than the tiles' overlap: a smaller subject is
        whole in some tile, and seen sharper there."""
        band = self.settings.overlap * self.settings.tile_px
        sides = found.xyxy[:, 2:] - found.xyxy[:, :2]
        keep = np.nonzero((sides > band).any(axis=1))[0]
        return found if len(keep) == len(found) else found.take(keep)

    def _run(self, image: np.ndarray, plan: Plan) -> Detections:
        height, width = image.shape[:2]
        seen: list[Seen] = []
        if plan.full:
            seen.append(Seen(self._large(self.detector.detect(image)), (0, 0, width, height)))
            self.stats.full_runs += 1
        for x1, y1, x2, y2 in plan.tiles:
            found = self.detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2]))
            if len(found):
                found.xyxy[:, [0, 2]] += x1
                found.xyxy[:, [1, 3]] += y1
            seen.append(Seen(found, (x1, y1, x2, y2)))
        self.stats.tile_runs += len(plan.tiles)
        self.stats.tiled_frames += 1
        return merge(seen, (width, height), self.iou)
