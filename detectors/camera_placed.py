"""Left objects and stalls on a camera with a shop-front or sidewalk zone: the tracks the
pipeline derives rather than the detector.

Left objects (`goods`, or `stall` where stall furniture stands) come from
detectors/leftobject.py, which is told which tracked boxes hide the ground (people and vehicles
that came in) and asks for a second look before a still region counts; stalls are stall
furniture standing together (detectors/stalls.py). Both have their own id spaces, are never
carried or let go by the detector's misses, and end when their detector says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime

import numpy as np

from detectors.camera_state import CameraStats, TrackState
from detectors.leftobject import WATCHED_KINDS, LeftObjectDetector, LeftUpdate
from detectors.motion import overlaps
from detectors.observation import FrameRef
from detectors.stalls import FURNITURE, StallGrouper
from detectors.tiling import Detector
from detectors.tracking import TrackedBox
from detectors.zones import Visit, footprint
from ingest.config import CameraDetect, Zone
from ingest.frames import Frame

Box = tuple[float, float, float, float]

NOT_COVERING = frozenset({FURNITURE, "goods", "stall"})
"""Tracked subjects that do not hide goods from the left-object detector (they are goods)."""
UPRIGHT = 1.5
"""A person's box at least this many times taller than wide stands like a person."""


class PlacedTracks:
    """The left-object detector and the stall grouper of one camera, and their tracks."""

    def __init__(
        self,
        device_id: str,
        settings: CameraDetect,
        zones: list[Zone],
        detector: Detector,
        stats: CameraStats,
    ) -> None:
        self.device_id = device_id
        self.settings = settings
        self.detector = detector
        self.stats = stats
        self.placed: dict[int, TrackState] = {}
        watched = _watches(zones)
        left = settings.left_object
        self.left = (
            LeftObjectDetector(left, zones, verify=self.verify)
            if left.enabled and watched
            else None
        )
        self.stall_grouper = StallGrouper() if watched else None

    def set_zones(self, zones: list[Zone]) -> None:
        """New zones while running: the detectors start or stop watching, keeping what they
        learnt where they go on."""
        watched = _watches(zones)
        left = self.settings.left_object
        if self.left is None and left.enabled and watched:
            self.left = LeftObjectDetector(left, zones, verify=self.verify)
        elif self.left is not None:
            self.left = self.left if watched else None
            if self.left is not None:
                self.left.set_zones(zones)
        if self.stall_grouper is None and watched:
            self.stall_grouper = StallGrouper()

    def look(
        self,
        image: np.ndarray,
        ts: datetime,
        tracked: list[TrackedBox],
        tracks: Mapping[int, TrackState],
    ) -> LeftUpdate | None:
        """The left-object detector on this frame (None without one): the tracked boxes of
        people and vehicles that came in hide the ground; the rest stand on it."""
        if self.left is None:
            return None
        started = time.perf_counter()
        subject_of = self.detector.subject_of
        covers, standing = [], []
        for b in tracked:
            state = tracks.get(b.track_id)
            x1, y1, x2, y2 = b.box
            upright = subject_of.get(b.class_id) == "person" and y2 - y1 >= UPRIGHT * (x2 - x1)
            came_in = state is not None and (state.moved or upright)
            if came_in and subject_of.get(b.class_id) not in NOT_COVERING:
                covers.append(b.box)
            else:
                standing.append(b.box)
        left = self.left.update(image, ts, covers, standing)
        self.stats.left_ms += (time.perf_counter() - started) * 1000
        return left

    def place(
        self,
        frame: Frame,
        left: LeftUpdate | None,
        seen: dict[int, tuple[float, float]],
        tracks: Mapping[int, TrackState],
        visits: Mapping[tuple[int, str], Visit],
    ) -> list[int]:
        """Left objects and stalls of this frame into `placed` and `seen`; returns the ids of
        those that ended."""
        furniture = {
            t.track_id: t.box
            for t in tracks.values()
            if t.subject == FURNITURE
            and t.track_id in seen
            and any(
                v.zone.kind.value in WATCHED_KINDS
                for (track_id, _), v in visits.items()
                if track_id == t.track_id
            )
        }
        ended: list[int] = []
        if left is not None:
            for region in left.active:
                state = self.placed.get(region.object_id)
                if state is None:
                    subject = "stall" if _under_any(region.box, furniture.values()) else "goods"
                    state = self._new(frame, region.object_id, subject, region.box)
                    state.first_seen = region.first_seen
                    self.stats.left_objects += 1
                state.last_seen, state.box = frame.ts, region.box
                seen[region.object_id] = footprint(region.box)
            ended += [r.object_id for r in left.ended]
        if self.stall_grouper is not None:
            stalls, gone = self.stall_grouper.update(furniture)
            for stall in stalls:
                state = self.placed.get(stall.stall_id)
                if state is None:
                    state = self._new(frame, stall.stall_id, "stall", stall.box)
                    state.first_seen = min(tracks[i].first_seen for i in stall.pieces)
                    self.stats.stalls += 1
                state.last_seen, state.box = frame.ts, stall.box
                seen[stall.stall_id] = footprint(stall.box)
            ended += [s.stall_id for s in gone]
        return ended

    def verify(self, image: np.ndarray, box: Box) -> bool:
        """A second look before a still region counts as goods: the detector on the region
        and its surroundings, enlarged. A person or vehicle found over it vetoes it; a "person"
        wider than tall does not (models call bags people; a standing person is upright)."""
        x1, y1, x2, y2 = box
        pad = max(x2 - x1, y2 - y1, 48.0)
        height, width = image.shape[:2]
        cx1, cy1 = max(0, int(x1 - pad)), max(0, int(y1 - pad))
        cx2, cy2 = min(width, int(x2 + pad)), min(height, int(y2 + pad))
        crop = image[cy1:cy2, cx1:cx2]
        found = self.detector.detect(crop)
        for xyxy, conf, subject in zip(found.xyxy, found.conf, found.subjects, strict=True):
            if conf < self.settings.conf or subject in NOT_COVERING:
                continue
            bx1, by1, bx2, by2 = (float(v) for v in xyxy)
            upright = by2 - by1 >= UPRIGHT * (bx2 - bx1)
            if (subject != "person" or upright) and _share(
                box, (bx1 + cx1, by1 + cy1, bx2 + cx1, by2 + cy1)
            ) >= 0.5:
                return False
        return True

    def _new(self, frame: Frame, track_id: int, subject: str, box: Box) -> TrackState:
        ref = FrameRef(self.device_id, frame.index, frame.ts, box, 1.0)
        state = TrackState(track_id, subject, -1, frame.ts, frame.ts, box, 1.0, ref, carried=True)
        self.placed[track_id] = state
        return state


def _watches(zones: list[Zone]) -> bool:
    return any(z.kind.value in WATCHED_KINDS for z in zones)


def _under_any(box: Box, others: Iterable[Box]) -> bool:
    return any(overlaps(box, [other]) for other in others)


def _share(box: tuple[float, ...], cover: tuple[float, ...]) -> float:
    """Share of `box`'s area under `cover`."""
    w = min(box[2], cover[2]) - max(box[0], cover[0])
    h = min(box[3], cover[3]) - max(box[1], cover[1])
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return max(w, 0.0) * max(h, 0.0) / area
