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
says so (the goods taken in, the furniture gone); detectors/camera_placed.py wires them in.

Beside this module: the Observations of visits (camera_observations.py), the pre-roll for
evidence (camera_recording.py), the threads (camera_worker.py), the counters (camera_state.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from detectors.camera_hold import OcclusionHold
from detectors.camera_observations import VisitObservations, subject_id
from detectors.camera_placed import PlacedTracks
from detectors.camera_recording import CameraRecording
from detectors.camera_state import CameraStats, TrackState
from detectors.camera_worker import CameraWorker
from detectors.detections import box_iou
from detectors.drone_locator import DroneLocator
from detectors.homography import Homography
from detectors.leftobject import LeftObjectDetector, LeftUpdate
from detectors.liveview import LiveView, live_view
from detectors.motion import MotionGate, grow_to_cover, overlaps
from detectors.observation import FrameRef, Observation
from detectors.stalls import StallGrouper
from detectors.tiling import TiledDetector
from detectors.tracking import ByteTracker, TrackedBox
from detectors.yolo import Detections, YoloDetector
from detectors.zones import PixelZones, Visit, footprint
from ingest.config import CameraDetect, Device, SiteConfig, Zone
from ingest.frames import EncodedFrame, Frame
from ingest.video.packetring import PacketClip
from ingest.video.sources import FileFrames

__all__ = ["CameraPipeline", "subject_id"]

log = logging.getLogger(__name__)

DEFAULT_FPS = 10.0
MATCH_IOU = 0.3
MOVERS = frozenset({"person"})
"""Subjects whose tracks a moved region is not grown over (the grown crop made the person model
see the ABODA bag beside its owner as part of a person: no goods)."""


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
        self.stats = CameraStats()
        self.recording = CameraRecording(
            self.settings.preroll_s, self.settings.jpeg_quality, self.stats.errors
        )
        self.ring = self.recording.ring
        self.packets = self.recording.packets
        """The pre-roll as the camera's own H.264/H.265 packets (the JPEG ring stays empty)."""
        self.ground = DroneLocator(device, self.stats.ground) if device.fov else None
        """A drone's: places footprints on the ground; its zones are geographic."""
        self._stats_lock = threading.Lock()
        self._worker = CameraWorker(self)
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
        hold_s = 0.0 if self.ground is not None else self.settings.occlusion_hold_s
        self.hold = OcclusionHold(hold_s, self.settings.hold_subjects)
        self._carried_ids: list[int] = []
        """The tracks `_carry` stood in for, in the order of its detections."""
        self.placing = PlacedTracks(
            self.device.id, self.settings, self.device.zones, self.detector, self.stats
        )
        self.observer = VisitObservations(self.device, self.homography, self.ground, self._track)
        self._last_full: datetime | None = None
        self._last_analysed: datetime | None = None

    @property
    def placed(self) -> dict[int, TrackState]:
        """Left objects and stalls: tracks the pipeline derives rather than the detector."""
        return self.placing.placed

    @property
    def left(self) -> LeftObjectDetector | None:
        return self.placing.left

    @property
    def stall_grouper(self) -> StallGrouper | None:
        return self.placing.stall_grouper

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
        left = self.placing.look(image, frame.ts, tracked, self.tracks)
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
        self.placing.set_zones(zones)
        log.info("%s: zones now %s", self.device.id, ", ".join(z.id for z in zones) or "none")
        self._emit(observations)

    def _zone_set(self, zones: list[Zone]) -> PixelZones:
        if self.ground is not None:
            return self.ground.zones(zones, self.settings.zone_exit_s)
        return PixelZones(zones, self.settings.zone_margin_px, self.settings.zone_exit_s)

    def _carry(self, detections: Detections, regions: list, full: bool) -> Detections:
        """Detections standing in for stationary tracks where nothing moved."""
        limit = self.settings.stationary_misses
        held = self.hold.held  # hidden: the tracker lost them, a new track may take them back
        self._carried_ids = []
        if full:
            for track_id in self.hold.found(detections.xyxy, self.tracks):
                self.tracks[track_id].carried = True  # carried until the tracker has it again
                self.stats.tracks_reclaimed += 1
            tracks = [t for t in self.tracks.values() if t.track_id not in held]
            if tracks:
                ious = box_iou(np.array([t.box for t in tracks], np.float32), detections.xyxy)
                for track, row in zip(tracks, ious, strict=True):
                    track.misses = 0 if row.size and row.max() >= MATCH_IOU else track.misses + 1
            keep = [t for t in tracks if t.carried and 0 < t.misses < limit]
        else:
            keep = [
                t
                for t in self.tracks.values()
                if t.misses < limit and t.track_id not in held and not overlaps(t.box, regions)
            ]
        if not keep:
            return Detections.empty()
        self._carried_ids = [t.track_id for t in keep]
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
            track_id = self.hold.identity(box.track_id)
            state = self.tracks.get(track_id)
            ref = FrameRef(self.device.id, frame.index, ts, box.box, box.conf)
            subject = subject_of.get(box.class_id, str(box.class_id))
            if state is None and real:
                held = self.hold.reclaim(box.track_id, subject, box.box, self.tracks)
                if held is not None:
                    track_id, state = held, self.tracks[held]
                    self.stats.tracks_reclaimed += 1
            elif state is None and box.det_index - n_real < len(self._carried_ids):
                source = self._carried_ids[box.det_index - n_real]
                if source in self.tracks:
                    self.hold.alias(box.track_id, source)
                    track_id, state = source, self.tracks[source]
            elif state is not None:
                self.hold.seen(track_id)
            if state is None:
                state = TrackState(
                    track_id,
                    subject,
                    box.class_id,
                    ts,
                    ts,
                    box.box,
                    box.conf,
                    ref,
                )
                self.tracks[track_id] = state
                self.stats.tracks_started += 1
            state.last_seen = ts
            state.carried = not real
            if real:
                state.box, state.conf, state.misses = box.box, box.conf, 0
                state.travel(box.box)
                state.settle(box.box, ts)
                if box.conf >= state.best.confidence:
                    state.best = ref
            seen[track_id] = footprint(state.box)
        for track_id in self.hold.held:
            if track_id not in seen and track_id in self.tracks:
                seen[track_id] = footprint(self.tracks[track_id].box)  # hidden, not gone
        ended = self.placing.place(frame, left, seen, self.tracks, self.zones.visits)
        ground = self.ground.place(seen, ts, frame.size) if self.ground else None
        events = self.zones.update(seen if ground is None else ground, ts)
        for visit in events.entered:
            placed = self.placed.get(visit.track_id)
            if placed is not None:
                visit.entered = min(visit.entered, placed.first_seen)
        observations = [self._observe(v, "enter", ts) for v in events.entered]
        observations += [self._observe(v, "exit", v.last_inside) for v in events.left]
        for track_id in ended:
            observations += self._end_track(track_id)
            self.placed.pop(track_id, None)
        lost = [
            t
            for t in self.tracks.values()
            if t.track_id not in seen
            and (
                ts - t.last_seen > timedelta(seconds=self.settings.lost_s)
                or t.misses >= self.settings.stationary_misses
            )
        ]
        gone = [t.track_id for t in lost if not self.hold.keep(t, ts)]
        self.stats.tracks_held += len(lost) - len(gone)
        for track_id in [*gone, *self.hold.expired(ts)]:
            if self.tracks.pop(track_id, None) is None:
                continue
            self.hold.release(track_id)
            self.stats.tracks_ended += 1
            observations += self._end_track(track_id)
        interval = timedelta(seconds=self.settings.emit_interval_s)
        observations += self.observer.inside(self.zones, interval)
        self._emit(observations)
        return observations

    def _observe(self, visit: Visit, state: str, last_seen: datetime) -> Observation:
        return self.observer.observe(visit, state, last_seen, self.zones)

    def _end_track(self, track_id: int) -> list[Observation]:
        """The `exit` Observations of a track's open visits, ended where it was last inside."""
        return [self._observe(v, "exit", v.last_inside) for v in self.zones.end_track(track_id)]

    def _track(self, track_id: int) -> TrackState | None:
        return self.tracks.get(track_id) or self.placed.get(track_id)

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
            observations += self._end_track(track_id)
            del self.placed[track_id]
        for track_id in list(self.tracks):
            observations += self._end_track(track_id)
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
        return self.recording.frames_between(t0, t1)

    def clip_between(self, t0: datetime, t1: datetime) -> PacketClip | None:
        return self.recording.clip_between(t0, t1)

    # ---- threaded (detectors/camera_worker.py) ---------------------------------------------

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def submit(self, frame: Frame) -> None:
        """A pushed frame (WebRTC track, MQTT snapshot): buffered, and analysed if the worker
        is free (latest-frame semantics, like the OpenCV sources)."""
        self._worker.submit(frame)
