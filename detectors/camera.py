"""One camera or drone stream: source → motion gate → YOLO → ByteTrack → zones → Observations.

Per analysed frame the detector sees only the regions that moved, except on a slow fixed
cadence (`redetect_s`) when it sees the whole frame. A track whose box lies where nothing moved
is carried into the tracker unchanged ("nothing contradicts it"), so a parked bicycle keeps its
track id and its dwell keeps growing; each full-frame check must re-find it, and after
`stationary_misses` misses in a row it is let go. Observations (PRESENCE) are emitted per
track and zone visit: on entering, about every `emit_interval_s` while inside, and on leaving.

On cameras with a shop-front or sidewalk zone two more kinds of track join them: left objects
(`goods`, or `stall` where stall furniture stands; detectors/leftobject.py, whatever the model
knows) and stalls (stall furniture standing together, detectors/stalls.py). They have their own
id spaces, are never carried or let go by the detector's misses, and end when their detector
says so (the goods taken in, the furniture gone).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from detectors.camera_state import CameraStats, TrackState, VisitLog
from detectors.detections import box_iou
from detectors.drone_locator import DroneLocator
from detectors.homography import Homography
from detectors.leftobject import ID_BASE as LEFT_ID_BASE
from detectors.leftobject import WATCHED_KINDS, LeftObjectDetector, LeftUpdate
from detectors.liveview import LiveView, live_view
from detectors.motion import MotionGate, grow_to_cover, overlaps
from detectors.observation import FrameRef, GeoPoint, Observation, ObservationKind
from detectors.stalls import FURNITURE, STALL_ID_BASE, StallGrouper
from detectors.tiling import TiledDetector
from detectors.tracking import ByteTracker, TrackedBox
from detectors.yolo import Detections, YoloDetector
from detectors.zones import PixelZones, Visit, footprint
from ingest.config import VIDEO_PUSH, CameraDetect, Device, SiteConfig, Zone
from ingest.frames import EncodedFrame, Frame
from ingest.video.packetring import PacketClip, PacketRing
from ingest.video.ring import FrameRing
from ingest.video.sources import FileFrames, VideoSource

log = logging.getLogger(__name__)

DEFAULT_FPS = 10.0
MATCH_IOU = 0.3
MOVERS = frozenset({"person"})
"""Subjects whose tracks a moved region is not grown over (the grown crop made the person model
see the ABODA bag beside its owner as part of a person: no goods)."""
NOT_COVERING = frozenset({FURNITURE, "goods", "stall"})
"""Tracked subjects that do not hide goods from the left-object detector (they are goods)."""
UPRIGHT = 1.5
"""A person's box at least this many times taller than wide stands like a person."""


class CameraPipeline:
    """Detection, tracking and zone dwell for one video device of the site.

    Threaded use: `start()` reads the device's `stream` (file, rtsp://, http://) on a reader
    thread and analyses the newest frame on a worker thread; devices that push video (WebRTC,
    MQTT snapshots) hand frames to `submit()`. Synchronous use: `process(frame)` or
    `run_file(path)`. Observations go to `on_observation` (on the worker thread when threaded).
    """

    def __init__(
        self,
        device: Device,
        config: SiteConfig,
        on_observation: Callable[[Observation], None],
        *,
        detector: YoloDetector | None = None,
        loop: bool = False,
    ) -> None:
        if device.detect is None:
            raise ValueError(f"{device.id}: no `detect:` settings for this camera in devices.yaml")
        self.device = device
        self.config = config
        self.settings: CameraDetect = device.detect
        self.on_observation = on_observation
        self.loop = loop
        self.detector = detector or TiledDetector(
            YoloDetector(
                self.settings.weights,
                imgsz=self.settings.imgsz,
                conf=min(0.1, self.settings.conf),
                iou=self.settings.iou,
                classes=self.settings.classes or None,
                family=self.settings.family,
                runtime=self.settings.runtime,
            ),
            self.settings.tiling,
        )
        self.homography = (
            Homography.from_pairs(device.homography) if device.homography is not None else None
        )
        self.ring = FrameRing(self.settings.preroll_s, self.settings.jpeg_quality)
        self.packets = PacketRing(self.settings.preroll_s)
        """The pre-roll as the camera's own H.264/H.265 packets (the JPEG ring stays empty)."""
        self.stats = CameraStats()
        self.ground = DroneLocator(device, self.stats.ground) if device.fov else None
        """A drone's: places footprints on the ground; its zones are geographic."""
        self._stats_lock = threading.Lock()
        self._source: VideoSource | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._pushed: Frame | None = None
        self._pushed_cond = threading.Condition()
        self._new_zones: list[Zone] | None = None
        self.live: LiveView | None = None
        """The newest analysed frame and what was found in it (the console's Live page)."""
        self.reset()

    def reset(self, fps: float | None = None) -> None:
        """Forget tracks, visits and motion history (a new stream)."""
        rate = self.settings.fps or fps or DEFAULT_FPS
        self.gate = MotionGate(self.settings.motion) if self.settings.motion.enabled else None
        self.tracker = ByteTracker(
            fps=rate, lost_s=self.settings.lost_s, high_thresh=self.settings.conf
        )
        self.zones = self._zone_set(self.device.zones)
        self.tracks: dict[int, TrackState] = {}
        self.placed: dict[int, TrackState] = {}
        """Left objects and stalls: tracks the pipeline derives rather than the detector."""
        left = self.settings.left_object
        watched = any(z.kind.value in WATCHED_KINDS for z in self.device.zones)
        self.left = (
            LeftObjectDetector(left, self.device.zones, verify=self._verify_left)
            if left.enabled and watched
            else None
        )
        self.stall_grouper = StallGrouper() if watched else None
        self._visits: dict[tuple[int, str], VisitLog] = {}
        self._last_full: datetime | None = None
        self._last_analysed: datetime | None = None

    # ---- synchronous core -------------------------------------------------------------------

    def process(self, frame: Frame) -> list[Observation]:
        """Analyse one frame (honouring `detect.fps`); returns the Observations it produced."""
        self.stats.frames += 1
        settings = self.settings
        last = self._last_analysed
        if (
            settings.fps
            and last is not None
            and (frame.ts - last).total_seconds() < 0.999 / settings.fps
        ):
            return []
        self._last_analysed = frame.ts
        self.stats.analysed += 1
        self._take_new_zones(frame.ts)
        image = frame.image
        height, width = image.shape[:2]
        regions = self.gate.regions(image) if self.gate else [(0, 0, width, height)]
        parked = [t.box for t in self.tracks.values() if t.subject not in MOVERS]
        if regions and parked:
            regions = grow_to_cover(regions, parked, width, height)
        full = (
            self.gate is None
            or self._last_full is None
            or frame.ts - self._last_full >= timedelta(seconds=settings.redetect_s)
        )
        started = time.perf_counter()
        if full:
            detections = self.detector.detect(image)
            self._last_full = frame.ts
            self.stats.full_runs += 1
        elif regions:
            detections = self.detector.detect_regions(image, regions)
            self.stats.region_runs += len(regions)
        else:
            detections = Detections.empty()
            self.stats.gate_skipped += 1
        detect_ms = (time.perf_counter() - started) * 1000
        self.stats.detect_ms += detect_ms
        self.stats.detections += len(detections)
        carried = self._carry(detections, regions, full)
        tracked = self.tracker.update(Detections.concat([detections, carried]))
        left = None
        if self.left is not None:
            started = time.perf_counter()
            subject_of = self.detector.subject_of
            covers, standing = [], []
            for b in tracked:
                state = self.tracks.get(b.track_id)
                x1, y1, x2, y2 = b.box
                upright = subject_of.get(b.class_id) == "person" and y2 - y1 >= UPRIGHT * (x2 - x1)
                came_in = state is not None and (state.moved or upright)
                if came_in and subject_of.get(b.class_id) not in NOT_COVERING:
                    covers.append(b.box)
                else:
                    standing.append(b.box)
            left = self.left.update(image, frame.ts, covers, standing)
            self.stats.left_ms += (time.perf_counter() - started) * 1000
        observations = self._advance(frame, tracked, len(detections), full, left)
        self.live = live_view(
            self.ground.view_device(self.device, frame.size) if self.ground else self.device,
            frame,
            [*self.tracks.values(), *self.placed.values()],
            self.zones.visits,
            regions,
            left.active if left is not None else (),
            detect_ms,
            full,
            subject_id,
        )
        return observations

    def set_zones(self, zones: list[Zone]) -> None:
        """New zones for this camera while it runs (the console's zone editor): the worker
        takes them before its next frame. Visits of the old zones end there (an `exit` each)."""
        with self._stats_lock:
            self._new_zones = list(zones)

    def _take_new_zones(self, ts: datetime) -> None:
        with self._stats_lock:
            zones, self._new_zones = self._new_zones, None
        if zones is None:
            return
        observations = []
        for track_id in {track_id for track_id, _ in self.zones.visits}:
            for visit in self.zones.end_track(track_id):
                observations.append(self._observe(visit, "exit", min(visit.last_inside, ts)))
        self.device = self.device.model_copy(update={"zones": zones})
        self.zones = self._zone_set(zones)
        watched = any(z.kind.value in WATCHED_KINDS for z in zones)
        left = self.settings.left_object
        if self.left is None and left.enabled and watched:
            self.left = LeftObjectDetector(left, zones, verify=self._verify_left)
        elif self.left is not None:
            self.left = self.left if watched else None
            if self.left is not None:
                self.left.set_zones(zones)
        if self.stall_grouper is None and watched:
            self.stall_grouper = StallGrouper()
        log.info("%s: zones now %s", self.device.id, ", ".join(z.id for z in zones) or "none")
        self._emit(observations)

    def _zone_set(self, zones: list[Zone]) -> PixelZones:
        if self.ground is not None:
            return self.ground.zones(zones, self.settings.zone_exit_s)
        return PixelZones(zones, self.settings.zone_margin_px, self.settings.zone_exit_s)

    def _carry(self, detections: Detections, regions: list, full: bool) -> Detections:
        """Detections standing in for stationary tracks where nothing moved."""
        limit = self.settings.stationary_misses
        if full:
            tracks = list(self.tracks.values())
            if tracks:
                ious = box_iou(np.array([t.box for t in tracks], np.float32), detections.xyxy)
                for track, row in zip(tracks, ious, strict=True):
                    track.misses = 0 if row.size and row.max() >= MATCH_IOU else track.misses + 1
            keep = [t for t in tracks if t.carried and 0 < t.misses < limit]
        else:
            keep = [
                t for t in self.tracks.values() if t.misses < limit and not overlaps(t.box, regions)
            ]
        if not keep:
            return Detections.empty()
        self.stats.carried += len(keep)
        return Detections(
            np.array([t.box for t in keep], np.float32),
            np.array([max(t.conf, self.settings.conf) for t in keep], np.float32),
            np.array([t.class_id for t in keep], int),
            tuple(t.subject for t in keep),
        )

    def _advance(
        self,
        frame: Frame,
        tracked: list[TrackedBox],
        n_real: int,
        full: bool,
        left: LeftUpdate | None = None,
    ) -> list[Observation]:
        ts = frame.ts
        seen: dict[int, tuple[float, float]] = {}
        subject_of = self.detector.subject_of
        for box in tracked:
            real = box.det_index < n_real
            state = self.tracks.get(box.track_id)
            ref = FrameRef(self.device.id, frame.index, ts, box.box, box.conf)
            if state is None:
                state = TrackState(
                    box.track_id,
                    subject_of.get(box.class_id, str(box.class_id)),
                    box.class_id,
                    ts,
                    ts,
                    box.box,
                    box.conf,
                    ref,
                )
                self.tracks[box.track_id] = state
                self.stats.tracks_started += 1
            state.last_seen = ts
            state.carried = not real
            if real:
                state.box, state.conf, state.misses = box.box, box.conf, 0
                state.travel(box.box)
                if box.conf >= state.best.confidence:
                    state.best = ref
            seen[box.track_id] = footprint(state.box)
        ended = self._place(frame, left, seen)
        ground = self.ground.place(seen, ts, frame.size) if self.ground else None
        events = self.zones.update(seen if ground is None else ground, ts)
        for visit in events.entered:
            placed = self.placed.get(visit.track_id)
            if placed is not None:
                visit.entered = min(visit.entered, placed.first_seen)
        observations = [self._observe(v, "enter", ts) for v in events.entered]
        observations += [self._observe(v, "exit", v.last_inside) for v in events.left]
        for track_id in ended:
            for visit in self.zones.end_track(track_id):
                observations.append(self._observe(visit, "exit", visit.last_inside))
            self.placed.pop(track_id, None)
        gone = [
            t
            for t in self.tracks.values()
            if t.track_id not in seen
            and (
                ts - t.last_seen > timedelta(seconds=self.settings.lost_s)
                or t.misses >= self.settings.stationary_misses
            )
        ]
        for track in gone:
            del self.tracks[track.track_id]
            self.stats.tracks_ended += 1
            for visit in self.zones.end_track(track.track_id):
                observations.append(self._observe(visit, "exit", visit.last_inside))
        interval = timedelta(seconds=self.settings.emit_interval_s)
        for visit in list(self.zones.visits.values()):
            log_ = self._visits.get((visit.track_id, visit.zone.id))
            if log_ is not None and visit.last_inside - log_.last_emit >= interval:
                observations.append(self._observe(visit, "inside", visit.last_inside))
        self._emit(observations)
        return observations

    def _observe(self, visit: Visit, state: str, last_seen: datetime) -> Observation:
        key = (visit.track_id, visit.zone.id)
        track = self._track(visit.track_id)
        log_ = self._visits.get(key)
        best = log_.best if log_ is not None else None
        if track is not None and (best is None or track.best.confidence >= best.confidence):
            best = track.best
        subject = track.subject if track is not None else log_.subject if log_ else "unknown"
        if state == "exit":
            self._visits.pop(key, None)
        elif best is not None:
            self._visits[key] = VisitLog(last_seen, best, subject)
        box = track.box if track is not None else best.box if best is not None else None
        count = sum(
            1
            for v in self.zones.in_zone(visit.zone.id)
            if (other := self._track(v.track_id)) is not None and other.subject == subject
        )
        return Observation(
            kind=ObservationKind.PRESENCE,
            device_id=self.device.id,
            subject=subject,
            subject_id=subject_id(visit.track_id),
            first_seen=visit.entered,
            last_seen=max(last_seen, visit.entered),
            zone_id=visit.zone.id,
            zone_kind=visit.zone.kind.value,
            state=state,
            count=count,
            location=self.ground.location(visit.track_id) if self.ground else self._locate(box),
            frame=best,
            attributes={
                "track_id": visit.track_id,
                "stationary": bool(track is not None and track.carried),
                **({"placed": True, "stationary": True} if visit.track_id >= LEFT_ID_BASE else {}),
                **({"merchant": visit.zone.merchant} if visit.zone.merchant else {}),
                **(self.ground.attributes(visit.track_id) if self.ground else {}),
            },
        )

    def _verify_left(self, image: np.ndarray, box: tuple[float, float, float, float]) -> bool:
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

    def _track(self, track_id: int) -> TrackState | None:
        return self.tracks.get(track_id) or self.placed.get(track_id)

    def _place(
        self, frame: Frame, left: LeftUpdate | None, seen: dict[int, tuple[float, float]]
    ) -> list[int]:
        """Left objects and stalls of this frame into `placed` and `seen`; returns the ids of
        those that ended."""
        furniture = {
            t.track_id: t.box
            for t in self.tracks.values()
            if t.subject == FURNITURE
            and t.track_id in seen
            and any(
                v.zone.kind.value in WATCHED_KINDS
                for (track_id, _), v in self.zones.visits.items()
                if track_id == t.track_id
            )
        }
        ended: list[int] = []
        if left is not None:
            for region in left.active:
                state = self.placed.get(region.object_id)
                if state is None:
                    subject = "stall" if _under_any(region.box, furniture.values()) else "goods"
                    state = self._new_placed(frame, region.object_id, subject, region.box)
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
                    state = self._new_placed(frame, stall.stall_id, "stall", stall.box)
                    state.first_seen = min(self.tracks[i].first_seen for i in stall.pieces)
                    self.stats.stalls += 1
                state.last_seen, state.box = frame.ts, stall.box
                seen[stall.stall_id] = footprint(stall.box)
            ended += [s.stall_id for s in gone]
        return ended

    def _new_placed(
        self, frame: Frame, track_id: int, subject: str, box: tuple[float, float, float, float]
    ) -> TrackState:
        ref = FrameRef(self.device.id, frame.index, frame.ts, box, 1.0)
        state = TrackState(track_id, subject, -1, frame.ts, frame.ts, box, 1.0, ref, carried=True)
        self.placed[track_id] = state
        return state

    def _locate(self, box: tuple[float, float, float, float] | None) -> GeoPoint | None:
        if self.homography is not None and box is not None:
            lon, lat = self.homography.to_lonlat(*footprint(box))
            return GeoPoint(float(lon), float(lat))
        location = self.device.location
        return GeoPoint(location.lon, location.lat) if location is not None else None

    def _emit(self, observations: list[Observation]) -> None:
        for observation in observations:
            self.stats.observations += 1
            try:
                self.on_observation(observation)
            except Exception:
                self.stats.errors["on_observation"] += 1
                log.exception("%s: on_observation failed", self.device.id)

    def finish(self, ts: datetime) -> list[Observation]:
        """End every open visit (the stream ended); returns their final `exit` Observations."""
        observations = []
        for track_id in list(self.placed):
            for visit in self.zones.end_track(track_id):
                observations.append(self._observe(visit, "exit", visit.last_inside))
            del self.placed[track_id]
        for track_id in list(self.tracks):
            for visit in self.zones.end_track(track_id):
                observations.append(self._observe(visit, "exit", visit.last_inside))
            del self.tracks[track_id]
            self.stats.tracks_ended += 1
        self._emit(observations)
        return observations

    def run_file(
        self,
        path: str | Path | None = None,
        *,
        start: datetime | None = None,
        max_frames: int | None = None,
        buffer: bool = True,
    ) -> list[Observation]:
        """Every frame of a video file, synchronously; returns all Observations in order."""
        frames = FileFrames(
            path or self.device.stream or "", self.device.id, start, fps=self.settings.fps
        )
        self.reset(frames.fps or None)
        observations: list[Observation] = []
        last: datetime | None = None
        for frame in frames:
            if max_frames is not None and frame.index >= max_frames:
                break
            if buffer:
                self.ring.add(frame)
            observations += self.process(frame)
            last = frame.ts
        if last is not None:
            observations += self.finish(last)
        return observations

    # ---- evidence ----------------------------------------------------------------------------

    def frames_between(self, t0: datetime, t1: datetime) -> list[EncodedFrame]:
        return self.ring.between(t0, t1)

    def clip_between(self, t0: datetime, t1: datetime) -> PacketClip | None:
        return self.packets.between(t0, t1)

    # ---- threaded ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is not None:
            return
        self._stop.clear()
        stream = self.device.stream
        if stream and stream not in VIDEO_PUSH:
            self._source = VideoSource(
                self.device.id,
                stream,
                loop=self.loop,
                on_frame=self._buffer,
                on_packet=self.packets.add,
                fps=self.settings.fps,
            )
            self.stats.source = self._source.stats
            self._source.start()
        self._worker = threading.Thread(
            target=self._work, name=f"camera-{self.device.id}", daemon=True
        )
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        with self._pushed_cond:
            self._pushed_cond.notify_all()
        if self._source is not None:
            self._source.stop()
            self._source = None
        if self._worker is not None:
            self._worker.join(10)
            self._worker = None

    def submit(self, frame: Frame) -> None:
        """A pushed frame (WebRTC track, MQTT snapshot): buffered, and analysed if the worker
        is free (latest-frame semantics, like the OpenCV sources)."""
        self._buffer(frame)
        with self._pushed_cond:
            self._pushed = frame
            self._pushed_cond.notify_all()

    def _buffer(self, frame: Frame) -> None:
        try:
            self.ring.add(frame)
        except ValueError:
            self.stats.errors["encode"] += 1

    def _next(self, timeout: float) -> Frame | None:
        if self._source is not None:
            return self._source.read(timeout)
        with self._pushed_cond:
            if self._pushed is None:
                self._pushed_cond.wait(timeout)
            frame, self._pushed = self._pushed, None
            return frame

    def _work(self) -> None:
        last: datetime | None = None
        while not self._stop.is_set():
            frame = self._next(0.5)
            if frame is None:
                if self._source is not None and self._source.ended:
                    break
                continue
            try:
                self.process(frame)
                last = frame.ts
            except Exception as exc:
                self.stats.errors[type(exc).__name__] += 1
                log.exception("%s: frame %d failed", self.device.id, frame.index)
        if last is not None and not self._stop.is_set():
            # the stream ended: its subjects are gone with it. A box stopping is not a subject
            # leaving (it would clear every open case of this camera), so no exits then.
            self.finish(last)


def subject_id(track_id: int) -> str:
    """`t7` for a detector's track, `o3` for a left object, `s2` for a stall."""
    if track_id >= STALL_ID_BASE:
        return f"s{track_id - STALL_ID_BASE}"
    if track_id >= LEFT_ID_BASE:
        return f"o{track_id - LEFT_ID_BASE}"
    return f"t{track_id}"


def _under_any(box: tuple[float, float, float, float], others) -> bool:
    return any(overlaps(box, [other]) for other in others)


def _share(box: tuple[float, ...], cover: tuple[float, ...]) -> float:
    """Share of `box`'s area under `cover`."""
    w = min(box[2], cover[2]) - max(box[0], cover[0])
    h = min(box[3], cover[3]) - max(box[1], cover[1])
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return max(w, 0.0) * max(h, 0.0) / area
