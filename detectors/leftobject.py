"""Left objects: goods put down in a shop-front or sidewalk zone, whatever they are.

No detector knows crates, racks or produce, and none is needed: a region that was not part of
the empty scene, appears in a watched zone and then stays still for `settle_s` while no tracked
person or vehicle covers it is a left object (the dual background of `detectors/dualbackground`
says which pixels are new and still; here they gather evidence and become regions). Each has its
own id, box and first-seen time (when its pixels started to count), and lasts until its region
matches the empty scene again for `exit_s` (the goods were taken in).

What must not become goods, and why it does not:

- Light that changes slowly (sun, clouds) is followed by the long-term background wherever
  nothing new stands, and a whole-frame gain keeps even frozen regions in step; light that
  jumps (a lamp switched, a camera's exposure) makes more than `global_change_share` of the
  frame new at once: the background is learnt again and evidence dropped.
- Shadows are darker than the background by a bounded ratio with its chromaticity: not new.
  A shadow that moves (a passer-by's) is never still; one that stays (an awning's) is either
  learnt slowly or, as it keeps changing with the sun, never still long enough.
- A person standing still and a parked or waiting vehicle are tracked by the camera's detector:
  pixels under their boxes (and for `cover_hold_s` after) gather no evidence, the long-term
  background does not learn them (no ghost when they leave), and a region mostly under a
  tracked box is not taken. A car parked from before the camera started is empty scene.
- A camera that moves (a drone drifting, a pole swaying, a PTZ turned) shifts the whole view
  against the background: phase correlation measures the shift, and beyond `camera_shift_px`
  the background is learnt again (from the operator's reference image where there is one),
  evidence is dropped and the left objects end, since their boxes no longer point at them.
- Anything larger than `max_area_share` of the watched zones is light or view, not goods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from detectors.dualbackground import DualBackground
from ingest.config import Zone
from ingest.config.camera_extras import LeftObject as Settings

Box = tuple[float, float, float, float]

WATCHED_KINDS = frozenset({"shopfront", "sidewalk"})
ID_BASE = 1_000_000_000
"""Left-object ids start here, far above any ByteTrack id of the same camera."""
ZONE_MARGIN = 6
"""Modelled pixels around the watched zones where evidence still counts."""
EXIT_SHARE = 0.35
"""A left object whose region is new in less than this share of its pixels matches the scene."""
ELONGATED = 10
"""A still region ten times longer than wide is an edge of light or view, not goods."""
COVERED_SHARE = 0.5
"""A region at least this much under a tracked box is that subject, not goods."""


@dataclass(frozen=True, slots=True)
class LeftRegion:
    object_id: int
    box: Box
    """Full-frame pixels (x1, y1, x2, y2)."""
    first_seen: datetime
    confirmed: datetime
    covered: bool = False
    """A tracked person or vehicle stands over it now (the goods may be being taken in)."""


@dataclass(frozen=True, slots=True)
class LeftUpdate:
    active: list[LeftRegion]
    ended: list[LeftRegion]
    relearned: str | None = None
    """Why the background was learnt again this frame: `camera_moved` or `light_changed`."""


@dataclass
class _Object:
    object_id: int
    mask: np.ndarray
    box: Box
    first_seen: datetime
    confirmed: datetime
    absent_s: float = 0.0
    covered: bool = False

    def region(self) -> LeftRegion:
        return LeftRegion(self.object_id, self.box, self.first_seen, self.confirmed, self.covered)


@dataclass
class LeftObjectStats:
    frames: int = 0
    relearned: dict[str, int] = field(default_factory=dict)
    started: int = 0
    ended: int = 0
    ms: float = 0.0
    ghosts: int = 0
    """Still regions that were the learnt background leaving (taken away), not goods."""
    vetoed: int = 0
    """Still regions where `verify` found a person or vehicle."""


def watched(zones: Iterable[Zone]) -> list[Zone]:
    return [z for z in zones if z.kind.value in WATCHED_KINDS]


def load_reference(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"left_object.reference {path}: not a readable image")
    return image


class LeftObjectDetector:
    """Feed every analysed frame with the boxes of the tracked subjects; get left objects."""

    def __init__(
        self,
        settings: Settings,
        zones: Iterable[Zone],
        *,
        id_base: int = ID_BASE,
        verify: Callable[[np.ndarray, Box], bool] | None = None,
    ):
        self.settings = settings
        self.verify = verify
        """Asked (frame, box) before a region becomes a left object: False when a detector
        finds a person or vehicle there after all."""
        self._image: np.ndarray | None = None
        self.zones = watched(zones)
        if not self.zones:
            raise ValueError("the left-object detector needs a shopfront or sidewalk zone")
        self.background = DualBackground(settings, load_reference(settings.reference))
        self.stats = LeftObjectStats()
        self._next_id = id_base
        self.objects: dict[int, _Object] = {}
        self._scale = 1.0
        self._zone_mask: np.ndarray | None = None
        self._evidence: np.ndarray | None = None
        self._uncovered: np.ndarray | None = None
        self._trust: np.ndarray | None = None
        """Seconds each pixel of the learnt background has matched the frame, quiet and
        uncovered: only a trusted background says what is new."""
        self._trusted_from_start = np.inf if self.background.reference is not None else 0.0
        self._quiet: np.ndarray | None = None
        self._last: datetime | None = None
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def update(
        self,
        image: np.ndarray,
        ts: datetime,
        covers: Sequence[Box],
        standing: Sequence[Box] = (),
    ) -> LeftUpdate:
        """One frame (BGR, full size) at `ts`. `covers`: boxes of tracked people and vehicles
        that came in (goods cannot be told under them); `standing`: boxes of tracked subjects
        that have not moved yet (the background is not trusted under them)."""
        started = time.perf_counter()
        try:
            return self._update(image, ts, covers, standing)
        finally:
            self.stats.frames += 1
            self.stats.ms += (time.perf_counter() - started) * 1000

    def _update(
        self, image: np.ndarray, ts: datetime, covers: Sequence[Box], standing: Sequence[Box]
    ) -> LeftUpdate:
        settings = self.settings
        work = self.background.prepare(image)
        self._image = image
        if self._zone_mask is None or self._zone_mask.shape != work.shape[:2]:
            self._start(image, work)
        dt = 0.0 if self._last is None else max(0.0, (ts - self._last).total_seconds())
        self._last = ts
        masks = self.background.compare(work, self._quiet)
        zone = self._zone_mask
        trust = self._trust
        assert zone is not None and self._evidence is not None and self._uncovered is not None
        assert trust is not None
        share = float(masks.new.mean())
        reason = (
            "camera_moved"
            if masks.shift_px > settings.camera_shift_px
            else "light_changed"
            if share > settings.global_change_share
            else None
        )
        if reason is not None:
            return self._relearn(work, reason)
        under = self._cover_mask(covers, work.shape[:2])
        self._uncovered[under] = 0.0
        self._uncovered[~under] += dt
        covered = self._uncovered < max(settings.cover_hold_s, 1e-6)
        tracked = covered | self._cover_mask(standing, under.shape)
        trust[~masks.new & ~masks.moving & ~tracked] += dt
        trusted = trust >= settings.trust_s
        untrusted_still = masks.new & ~masks.moving & ~trusted & ~tracked
        if untrusted_still.any():
            self.background.adopt(untrusted_still)
            masks.new[untrusted_still] = False
        evidence = self._evidence
        still = masks.new & ~masks.moving & ~covered
        stirring = masks.new & masks.moving & ~covered
        evidence[still] += dt
        evidence[stirring] = np.maximum(evidence[stirring] - dt, 0.0)
        evidence[~masks.new] = 0.0
        evidence[~zone] = 0.0
        ended = self._follow(masks.new, covers, dt)
        self._confirm(covers, ts, work)
        frozen = covered | (evidence > 0) | self._object_mask()
        self.background.learn(work, dt, frozen)
        self._quiet = ~masks.new
        return LeftUpdate([o.region() for o in self.objects.values()], ended)

    def set_zones(self, zones: Iterable[Zone]) -> None:
        """New zones while running (the console's zone editor): the watched area changes; the
        learnt background and the objects found so far stay."""
        kept = watched(zones)
        if not kept:
            raise ValueError("the left-object detector needs a shopfront or sidewalk zone")
        self.zones = kept
        if self._zone_mask is not None:
            self._zone_mask = self._mask_of_zones(*self._zone_mask.shape)

    def _mask_of_zones(self, height: int, width: int) -> np.ndarray:
        mask = np.zeros((height, width), np.uint8)
        for zone in self.zones:
            points = np.round(np.array(zone.polygon, np.float64) * self._scale).astype(np.int32)
            cv2.fillPoly(mask, [points], 255)
        grow = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * ZONE_MARGIN + 1, 2 * ZONE_MARGIN + 1)
        )
        return cv2.dilate(mask, grow) > 0

    def _start(self, image: np.ndarray, work: np.ndarray) -> None:
        height, width = work.shape[:2]
        self._scale = width / image.shape[1]
        self._zone_mask = self._mask_of_zones(height, width)
        self._evidence = np.zeros((height, width), np.float32)
        self._uncovered = np.full((height, width), np.inf, np.float32)
        self._trust = np.full((height, width), self._trusted_from_start, np.float32)
        self._quiet = None
        self.objects.clear()
        self.background.relearn(work)

    def _relearn(self, work: np.ndarray, reason: str) -> LeftUpdate:
        assert self._evidence is not None
        self.stats.relearned[reason] = self.stats.relearned.get(reason, 0) + 1
        ended = [o.region() for o in self.objects.values()]
        self.stats.ended += len(ended)
        self.objects.clear()
        self._evidence[:] = 0.0
        assert self._trust is not None
        self._trust[:] = self._trusted_from_start
        self._quiet = None
        self.background.relearn(work)
        return LeftUpdate([], ended, reason)

    def _cover_mask(self, covers: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(shape, bool)
        s = self._scale
        for x1, y1, x2, y2 in covers:
            pad = 0.1 * (x2 - x1)
            mask[
                max(0, int((y1 - pad) * s)) : max(0, int(np.ceil((y2 + pad) * s))),
                max(0, int((x1 - pad) * s)) : max(0, int(np.ceil((x2 + pad) * s))),
            ] = True
        return mask

    def _object_mask(self) -> np.ndarray:
        assert self._evidence is not None
        mask = np.zeros(self._evidence.shape, bool)
        for obj in self.objects.values():
            mask |= obj.mask
        return mask

    def _ghost(self, part: np.ndarray, work: np.ndarray) -> bool:
        """Something taken away, not put down: inside the region the frame now looks like
        its surroundings (the pavement shows again) while the learnt background stood out
        there, and the region's outline is an edge in the learnt background, not in the
        frame (Tian et al.'s test for removed objects, with colour beside edges)."""
        long = self.background.long
        assert long is not None
        inside = part.astype(np.uint8)
        grown = cv2.dilate(inside, self._kernel, iterations=3)
        around = (grown > 0) & ~part
        edge = (grown - cv2.erode(inside, self._kernel)) > 0
        if not around.any():
            return False

        def contrast(image: np.ndarray) -> float:
            return float(np.abs(image[part].mean(axis=0) - image[around].mean(axis=0)).max())

        stood_out = contrast(long) > contrast(work)
        outlined = _edges(long)[edge].mean() > _edges(work)[edge].mean()
        return stood_out and outlined

    def _follow(self, new: np.ndarray, covers: Sequence[Box], dt: float) -> list[LeftRegion]:
        """Keep each left object while its region is still new; end the ones taken away."""
        assert self._evidence is not None
        ended = []
        for obj in list(self.objects.values()):
            obj.covered = any(_share_under(obj.box, c) > 0 for c in covers)
            area = int(obj.mask.sum())
            present = area > 0 and new[obj.mask].sum() >= EXIT_SHARE * area
            if present or obj.covered:
                obj.absent_s = 0.0
                continue
            obj.absent_s += dt
            if obj.absent_s >= self.settings.exit_s:
                del self.objects[obj.object_id]
                self._evidence[obj.mask] = 0.0
                self.stats.ended += 1
                ended.append(obj.region())
        return ended

    def _confirm(self, covers: Sequence[Box], ts: datetime, work: np.ndarray) -> None:
        """Still regions past the settle time become left objects (or grow known ones)."""
        assert self._evidence is not None and self._zone_mask is not None
        settings = self.settings
        settled = (self._evidence >= settings.settle_s).astype(np.uint8)
        if not settled.any():
            return
        max_area = settings.max_area_share * float(self._zone_mask.sum())
        if settled.sum() > max_area:
            # More of the zones settled at once than any goods would cover: light (a lamp,
            # a shop sign, the sun round a corner) changed the scene there, so learn it.
            fresh = (settled > 0) & ~self._object_mask()
            self.background.adopt(fresh)
            self._evidence[fresh] = 0.0
            self.stats.relearned["light_changed_locally"] = (
                self.stats.relearned.get("light_changed_locally", 0) + 1
            )
            return
        settled = cv2.morphologyEx(settled, cv2.MORPH_CLOSE, self._kernel, iterations=2)
        count, labels, boxes, _ = cv2.connectedComponentsWithStats(settled, connectivity=8)
        min_area = settings.min_area_px * self._scale**2
        taken = np.zeros(settled.shape, bool)
        for label in range(1, count):
            x, y, w, h, area = (int(v) for v in boxes[label])
            part = labels == label
            known = [o for o in self.objects.values() if (o.mask & part).any()]
            if known:
                obj = known[0]
                obj.mask |= part
                ys, xs = np.nonzero(obj.mask)
                obj.box = _full_box((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), self._scale)
                taken |= part
                continue
            if area < min_area or area > max_area or max(w, h) > ELONGATED * min(w, h):
                continue
            box = _full_box((x, y, x + w, y + h), self._scale)
            if any(_share_under(box, c) >= COVERED_SHARE for c in covers):
                continue
            if self._ghost(part, work):
                self.background.adopt(part)
                self._evidence[part] = 0.0
                self.stats.ghosts += 1
                continue
            image = self._image
            if self.verify is not None and image is not None and not self.verify(image, box):
                self._evidence[part] = 0.0
                self.stats.vetoed += 1
                continue
            held = float(self._evidence[part].max())
            obj = _Object(self._next_id, part, box, ts - timedelta(seconds=held), ts)
            self._next_id += 1
            self.objects[obj.object_id] = obj
            self.stats.started += 1
            taken |= part
        # Pixels settled for long that made no object (too small, too big, under someone)
        # start over, so the long-term background may learn them.
        stale = ~taken & (self._evidence >= 2 * settings.settle_s)
        self._evidence[stale] = 0.0


def _edges(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def _full_box(box: tuple[int, int, int, int], scale: float) -> Box:
    x1, y1, x2, y2 = box
    return (x1 / scale, y1 / scale, x2 / scale, y2 / scale)


def _share_under(box: Box, cover: Box) -> float:
    """Share of `box`'s area that lies under `cover`."""
    w = min(box[2], cover[2]) - max(box[0], cover[0])
    h = min(box[3], cover[3]) - max(box[1], cover[1])
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return max(w, 0.0) * max(h, 0.0) / area
