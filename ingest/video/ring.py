"""A bounded, time-windowed ring of JPEG-encoded frames: the evidence pre-roll of sources that
deliver raw frames (WebRTC, MQTT snapshots, codecs other than H.264/H.265); cameras sending
H.264/H.265 keep their own packets instead (`ingest.video.packetring`)."""

from __future__ import annotations

import bisect
import threading
from collections import deque
from datetime import datetime, timedelta

import cv2

from ingest.frames import EncodedFrame, Frame


class FrameRing:
    """Keeps the last `seconds` of frames (at most `max_frames`), encoded as JPEG.

    Encoded, because a raw 768×576 frame is 1.3 MB and a JPEG of it ~50 kB: ten seconds of
    10 fps video stay near 5 MB per camera. Thread-safe: the camera worker adds, evidence reads.
    """

    def __init__(self, seconds: float = 10.0, quality: int = 80, max_frames: int = 3000) -> None:
        self.window = timedelta(seconds=seconds)
        self.quality = quality
        self._frames: deque[EncodedFrame] = deque(maxlen=max_frames)
        self._lock = threading.Lock()
        self.bytes = 0

    def add(self, frame: Frame) -> EncodedFrame:
        ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError(f"{frame.device_id}: frame {frame.index} could not be JPEG-encoded")
        width, height = frame.size
        encoded = EncodedFrame(frame.device_id, frame.index, frame.ts, width, height, buf.tobytes())
        self.add_encoded(encoded)
        return encoded

    def add_encoded(self, encoded: EncodedFrame) -> None:
        with self._lock:
            if self._frames and encoded.ts < self._frames[-1].ts:
                self._frames.clear()  # the source restarted (a file looped, a clock stepped back)
                self.bytes = 0
            if len(self._frames) == self._frames.maxlen:
                self.bytes -= len(self._frames[0].jpeg)
            self._frames.append(encoded)
            self.bytes += len(encoded.jpeg)
            horizon = encoded.ts - self.window
            while self._frames and self._frames[0].ts < horizon:
                self.bytes -= len(self._frames.popleft().jpeg)

    def between(self, t0: datetime, t1: datetime) -> list[EncodedFrame]:
        """Frames with t0 <= ts <= t1, oldest first."""
        with self._lock:
            frames = list(self._frames)
        times = [f.ts for f in frames]
        return frames[bisect.bisect_left(times, t0) : bisect.bisect_right(times, t1)]

    def latest(self) -> EncodedFrame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)
