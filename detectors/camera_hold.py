"""Still vehicles hidden for a while keep their track.

A bus that stops in front of a parked car hides it from the detector; its ByteTrack track is
lost after `lost_s` and, when the bus has gone, the car comes back under a new track id. Without
this hold the camera would report the car as gone (its case cleared) and then as a new subject
(a second case after the dwell). Here a track of a `hold_subjects` kind that stood still for
`STILL_S` before it was lost is *held* for `occlusion_hold_s`: it stays where it stood (its zone
visits go on), and a new track of any held kind that appears where it stood (box IoU at least
`REID_IOU`; a van is a car in one frame and a truck in the next) takes its id back, as does a
full-frame detection there. A held track nobody reclaims ends when its hold runs out.

Fixed cameras only: a drone's pixels move with the drone, so where a track stood in the image
says nothing after the drone has moved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import numpy as np

from detectors.camera_state import TrackState
from detectors.detections import box_iou

STILL_S = 3.0
"""A track counts as still once its footprint stayed put (see TrackState.settle) this long."""
REID_IOU = 0.3
"""A new track within this overlap of a held track's last box is that track come back."""
SAME_IOU = 0.5
"""... and within this overlap of a still track's box, that track again (two parked cars side
by side overlap far less)."""


class OcclusionHold:
    def __init__(self, hold_s: float, subjects: Iterable[str]) -> None:
        self.hold = timedelta(seconds=hold_s)
        self.subjects = frozenset(subjects)
        self.held: dict[int, datetime] = {}
        """Held track id → when its hold began."""
        self._aliases: dict[int, int] = {}
        """Tracker id of a track that came back → the held id it took back."""

    def identity(self, tracker_id: int) -> int:
        return self._aliases.get(tracker_id, tracker_id)

    def reclaim(
        self,
        tracker_id: int,
        subject: str,
        box: tuple[float, float, float, float],
        tracks: Mapping[int, TrackState],
    ) -> int | None:
        """A track the tracker just started: the still subject it is (whose id it takes from
        now on), or None. A held track needs `REID_IOU` of its box; a still one the pipeline
        carries (nothing moved over it) `SAME_IOU`: the tracker then holds two tracks for one
        parked car, one restarted from the carried box and one from a detection."""
        if not self.hold or subject not in self.subjects:
            return None
        candidates = [
            t
            for t in tracks.values()
            if t.subject in self.subjects and (t.track_id in self.held or (t.carried and _still(t)))
        ]
        if not candidates:
            return None
        boxes = np.array([t.box for t in candidates], np.float32)
        ious = box_iou(np.array([box], np.float32), boxes)[0]
        best = int(np.argmax(ious))
        track_id = candidates[best].track_id
        if ious[best] < (REID_IOU if track_id in self.held else SAME_IOU):
            return None
        self.alias(tracker_id, track_id)
        return track_id

    def alias(self, tracker_id: int, track_id: int) -> None:
        """`tracker_id` is `track_id` from now on (it was started from the box the pipeline
        carried for it, or where it stood); no longer held."""
        self.held.pop(track_id, None)
        self._aliases[tracker_id] = track_id

    def found(self, boxes: np.ndarray, tracks: Mapping[int, TrackState]) -> list[int]:
        """Held tracks that a full-frame detection (`boxes`, xyxy) finds where they stood: no
        longer held (the pipeline carries them again). Returns their ids."""
        out = []
        if not len(boxes):
            return out
        for track_id in [t for t in self.held if t in tracks]:
            ious = box_iou(np.array([tracks[track_id].box], np.float32), boxes)
            if ious.max() >= REID_IOU:
                del self.held[track_id]
                out.append(track_id)
        return out

    def seen(self, track_id: int) -> None:
        """The track was found again under its own id (the tracker revived it)."""
        self.held.pop(track_id, None)

    def keep(self, track: TrackState, ts: datetime) -> bool:
        """A track about to be let go: True (and held from now) when it is a still subject of a
        held kind."""
        if not self.hold or track.subject not in self.subjects or not _still(track):
            return False
        self.held[track.track_id] = ts
        return True

    def expired(self, ts: datetime) -> list[int]:
        """Held tracks whose hold ran out (no longer held)."""
        out = [t for t, since in self.held.items() if ts - since > self.hold]
        for track_id in out:
            del self.held[track_id]
        return out

    def release(self, track_id: int) -> None:
        """The track has ended: forget its hold and the tracker ids that stood for it."""
        self.held.pop(track_id, None)
        for tracker_id in [k for k, v in self._aliases.items() if v == track_id]:
            del self._aliases[tracker_id]


def _still(track: TrackState) -> bool:
    return track.still_since is not None and (
        track.last_seen - track.still_since >= timedelta(seconds=STILL_S)
    )
