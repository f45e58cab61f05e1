"""A camera pipeline on threads: a reader thread reads the device's `stream` (file, rtsp://,
http://) into the recording, or pushed frames (WebRTC, MQTT snapshots) arrive by `submit`; a
worker thread analyses the newest frame, dropping those it had no time for."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from ingest.config import VIDEO_PUSH
from ingest.frames import Frame
from ingest.video.sources import VideoSource

if TYPE_CHECKING:
    from detectors.camera import CameraPipeline

log = logging.getLogger("detectors.camera")


class CameraWorker:
    def __init__(self, pipeline: CameraPipeline) -> None:
        self.pipeline = pipeline
        self._source: VideoSource | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._pushed: Frame | None = None
        self._pushed_cond = threading.Condition()

    def start(self) -> None:
        if self._worker is not None:
            return
        self._stop.clear()
        pipeline = self.pipeline
        stream = pipeline.device.stream
        if stream and stream not in VIDEO_PUSH:
            self._source = VideoSource(
                pipeline.device.id,
                stream,
                loop=pipeline.loop,
                on_frame=pipeline.recording.add_frame,
                on_packet=pipeline.recording.add_packet,
                fps=pipeline.settings.fps,
            )
            pipeline.stats.source = self._source.stats
            self._source.start()
        self._worker = threading.Thread(
            target=self._work, name=f"camera-{pipeline.device.id}", daemon=True
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
        self.pipeline.recording.add_frame(frame)
        with self._pushed_cond:
            self._pushed = frame
            self._pushed_cond.notify_all()

    def _next(self, timeout: float) -> Frame | None:
        if self._source is not None:
            return self._source.read(timeout)
        with self._pushed_cond:
            if self._pushed is None:
                self._pushed_cond.wait(timeout)
            frame, self._pushed = self._pushed, None
            return frame

    def _work(self) -> None:
        pipeline = self.pipeline
        last: datetime | None = None
        while not self._stop.is_set():
            frame = self._next(0.5)
            if frame is None:
                if self._source is not None and self._source.ended:
                    break
                continue
            try:
                pipeline.process(frame)
                last = frame.ts
            except Exception as exc:
                pipeline.stats.errors[type(exc).__name__] += 1
                log.exception("%s: frame %d failed", pipeline.device.id, frame.index)
        if last is not None and not self._stop.is_set():
            # the stream ended: its subjects are gone with it. A box stopping is not a subject
            # leaving (it would clear every open case of this camera), so no exits then.
            pipeline.finish(last)
