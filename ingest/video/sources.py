"""OpenCV video sources: files, RTSP and HTTP streams, and still images.

`VideoSource` runs one reader thread per camera and keeps only the latest frame, so a detector
slower than the stream never builds a backlog (frames it could not take are counted as
dropped). A stream that fails to open or stops delivering is reopened with exponential backoff.
`FileFrames` reads a whole file synchronously, every frame, for tests and benchmarks.
A `stream` naming an image (.jpg, .png) is a still camera (`ingest.video.still`): the image
again and again at a frame rate, with sensor noise, endlessly or for a duration.
Given an `on_packet`, a live stream or an H.264/H.265 file is read with PyAV instead
(`ingest.video.avsource`): its packets are recorded as they came, frames decoded for analysis.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2

from ingest.frames import Frame
from ingest.video.avsource import file_codec, read_av
from ingest.video.filecheck import unreadable
from ingest.video.packetring import RECORDABLE, EncodedPacket
from ingest.video.still import StillScene, is_still, unreadable_image

log = logging.getLogger(__name__)

# RTSP over TCP: UDP loses packets on busy networks and smears whole frames.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")


def is_live(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def open_capture(url: str, timeout_s: float = 10.0) -> cv2.VideoCapture:
    """Open with FFmpeg, bounded open/read timeouts (a dead camera must not hang the reader)."""
    path = url.removeprefix("file://")
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(timeout_s * 1000),
    ]
    return cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)


TRUNCATED_SHARE = 0.9
"""A file that yields fewer than this share of the frames its container declares is damaged
(frame counts of some containers are estimates, hence the margin)."""


def unreadable_file(url: str) -> str:
    """Why OpenCV could not open a video file, as precisely as can be told from outside."""
    return unreadable(
        url,
        "OpenCV/FFmpeg does not recognise the {size}-byte file as video "
        "(corrupt, truncated before its header ends, or not a video)",
    )


class FileFrames:
    """Every frame of a video file with its container timestamp (`start` + position).

    A still image gives `frames` frames, or `duration_s` seconds of them, at `fps` (default
    5), endlessly when neither is given; a video gives all its frames, or the first `frames`
    or `duration_s` worth. `fps` is a still's rate only: a video keeps its container's.
    """

    def __init__(
        self,
        path: str | Path,
        device_id: str,
        start: datetime | None = None,
        *,
        fps: float | None = None,
        frames: int | None = None,
        duration_s: float | None = None,
        noise_sigma: float | None = None,
        seed: int = 0,
    ) -> None:
        self.path = str(path)
        self.device_id = device_id
        self.start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.still: StillScene | None = None
        if is_still(self.path):
            extra = {} if noise_sigma is None else {"noise_sigma": noise_sigma}
            self.still = StillScene.open(self.path, device_id, fps=fps, seed=seed, **extra)
            self.fps = self.still.fps
            self.limit = _limit(frames, self.still.count_for(duration_s))
            self.frame_count = self.limit or 0
            """0: endless (a still without `frames` or `duration_s`)."""
            return
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"{device_id}: video file not found: {self.path}")
        capture = open_capture(self.path)
        try:
            if not capture.isOpened():
                raise ValueError(f"{device_id}: {self.path}: {unreadable_file(self.path)}")
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
            self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        by_duration = None
        if duration_s is not None and self.fps > 0:
            by_duration = max(0, int(duration_s * self.fps + 1e-9))
        self.limit = _limit(frames, by_duration)

    def __iter__(self) -> Iterator[Frame]:
        if self.still is not None:
            yield from self.still.frames(self.device_id, self.start, self.limit)
            return
        capture = open_capture(self.path)
        try:
            index = 0
            while self.limit is None or index < self.limit:
                ok, image = capture.read()
                if not ok:
                    return
                yield Frame(self.device_id, index, self._ts(capture, index), image)
                index += 1
        finally:
            capture.release()

    def _ts(self, capture: cv2.VideoCapture, index: int) -> datetime:
        fps = self.fps
        offset = index / fps if fps > 0 else capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3
        return self.start + timedelta(seconds=offset)


def _limit(*limits: int | None) -> int | None:
    given = [n for n in limits if n is not None]
    if any(n < 0 for n in given):
        raise ValueError(f"a frame count cannot be negative: {min(given)}")
    return min(given) if given else None


@dataclass
class VideoSourceStats:
    frames: int = 0
    dropped: int = 0
    """Frames replaced by a newer one before the consumer took them."""
    opens: int = 0
    failures: int = 0
    """Failed opens and streams that stopped delivering."""
    reconnects: int = 0
    """Live streams that delivered again after being lost."""
    offline_s: float = 0.0
    """Seconds between a live stream's last frame and its first frame after a reconnect: the
    camera's time not captured (the source was away; nothing the box had is lost)."""
    connected: bool = False
    last_error: str = ""
    corrupt: int = 0
    """Packets the decoder rejected (PyAV reader); the stream goes on."""


class VideoSource:
    """A camera stream read on its own thread; `read()` returns the newest unread frame.

    Files play at their own frame rate (timestamps: `start` + position, or the wall clock when
    `start` is None) and, with `loop`, start over; live streams are stamped on arrival. A still
    image plays at `fps` (default 5) for `duration_s` seconds, endlessly with `loop` or without
    a duration; its timestamps run on from the first frame's clock and never start over.
    """

    def __init__(
        self,
        device_id: str,
        url: str,
        *,
        loop: bool = False,
        realtime: bool = True,
        min_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        timeout_s: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_frame: Callable[[Frame], None] | None = None,
        on_packet: Callable[[EncodedPacket], None] | None = None,
        fps: float | None = None,
        duration_s: float | None = None,
        noise_sigma: float | None = None,
        seed: int = 0,
    ) -> None:
        self.device_id = device_id
        self.url = url
        self.live = is_live(url)
        self.still = is_still(url)
        self.fps = fps
        """A still's frame rate (None: 5); a video keeps its container's."""
        self.duration_s = duration_s
        """How long a still plays (None: endlessly)."""
        self.noise_sigma = noise_sigma
        self.seed = seed
        self.loop = loop
        self.realtime = realtime
        self.min_delay_s = min_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.on_frame = on_frame
        """Called on the reader thread for every frame (e.g. the ring buffer), dropped or not,
        except frames whose packets went to `on_packet`."""
        self.on_packet = on_packet
        """Called on the reader thread with each H.264/H.265 packet as it came (the evidence
        pre-roll without re-encoding); None: OpenCV reads the stream and only frames come."""
        self.stats = VideoSourceStats()
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._index = 0
        self._lost_at: float | None = None
        """monotonic time of the last frame before a live stream was lost"""
        self.ended = False
        """A file (without `loop`) was read to its end."""

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"video-{self.device_id}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not returned before; None on timeout or once the source ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._latest is None:
                if self.ended or self._stop.is_set():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._latest = self._latest, None
            return frame

    def _publish(self, frame: Frame, recorded: bool = False) -> None:
        if self.on_frame is not None and not recorded:
            try:
                self.on_frame(frame)
            except Exception:
                log.exception("%s: on_frame failed for frame %d", self.device_id, frame.index)
        with self._cond:
            if self._latest is not None:
                self.stats.dropped += 1
            self._latest = frame
            self.stats.frames += 1
            self._cond.notify_all()

    def _run(self) -> None:
        delay = self.min_delay_s
        while not self._stop.is_set():
            delivered = self._read_once()
            if self._stop.is_set() or self.ended:
                break
            if delivered:
                delay = self.min_delay_s  # it worked for a while: start backing off afresh
                if not self.live:
                    continue  # a looping file starts over at once
            log.warning(
                "%s: video %s unavailable (%s); retrying in %.1f s",
                self.device_id,
                self.url,
                self.stats.last_error,
                delay,
            )
            self._stop.wait(delay)
            delay = min(delay * 2, self.max_delay_s)
        with self._cond:
            self._cond.notify_all()

    def _back_again(self) -> None:
        assert self._lost_at is not None
        offline = time.monotonic() - self._lost_at
        self._lost_at = None
        self.stats.reconnects += 1
        self.stats.offline_s += offline
        log.warning(
            "%s: video %s reconnected after %.1f s without frames (reconnect %d)",
            self.device_id,
            self.url,
            offline,
            self.stats.reconnects,
        )

    def _read_once(self) -> bool:
        """Open, read until the stream ends or fails; True if any frame came through."""
        if self.still:
            return self._play_still()
        if self.on_packet is not None and (self.live or file_codec(self.url) in RECORDABLE):
            return read_av(self)
        capture = open_capture(self.url, self.timeout_s)
        self.stats.opens += 1
        delivered = False
        read = 0
        try:
            if not capture.isOpened():
                self.stats.failures += 1
                self.stats.last_error = "cannot open" if self.live else unreadable_file(self.url)
                return False
            self.stats.connected = True
            declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
            period = 1.0 / fps if (fps > 0 and not self.live and self.realtime) else 0.0
            origin = self.clock()
            started = time.monotonic()
            position = 0
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok:
                    break
                delivered = True
                if self.live:
                    ts = self.clock()
                    if self._lost_at is not None:
                        self._back_again()
                else:
                    offset = position / fps if fps > 0 else capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3
                    ts = origin + timedelta(seconds=offset)
                    if period:
                        wait = started + position * period - time.monotonic()
                        if wait > 0:
                            self._stop.wait(wait)
                    position += 1
                self._publish(Frame(self.device_id, self._index, ts, image))
                self._index += 1
                read += 1
            if not self.live and not self._stop.is_set():
                return self._file_ended(read, declared)
            self.stats.failures += 1
            self.stats.last_error = "stream stopped delivering"
            if self.live and delivered and not self._stop.is_set():
                self._lost_at = time.monotonic()
            return delivered
        finally:
            self.stats.connected = False
            capture.release()

    def _file_ended(self, read: int, declared: int) -> bool:
        """A file read to its end: damaged if short of what it declares; over, or looped."""
        short = read < TRUNCATED_SHARE * declared
        if short:
            self.stats.failures += 1
            self.stats.last_error = (
                f"file is truncated or corrupt: {read} of the {declared} frames its "
                "header declares could be read"
            )
            if not self.loop:
                log.warning("%s: video %s: %s", self.device_id, self.url, self.stats.last_error)
        if self.loop:
            return not short  # a damaged file is replayed after a backoff, not spun
        self.ended = True
        return True

    def _play_still(self) -> bool:
        """Deliver the still image until stopped or its duration is over; False if unreadable."""
        self.stats.opens += 1
        extra = {} if self.noise_sigma is None else {"noise_sigma": self.noise_sigma}
        try:
            scene = StillScene.open(self.url, self.device_id, fps=self.fps, seed=self.seed, **extra)
        except (OSError, ValueError):
            self.stats.failures += 1
            self.stats.last_error = unreadable_image(self.url)
            return False
        count = None if self.loop else scene.count_for(self.duration_s)
        period = 1.0 / scene.fps if self.realtime else 0.0
        frames = scene.frames(self.device_id, self.clock(), count, first_index=self._index)
        started = time.monotonic()
        self.stats.connected = True
        try:
            for position, frame in enumerate(frames):
                wait = started + position * period - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                if self._stop.is_set():
                    return True
                self._publish(frame)
                self._index += 1
        finally:
            self.stats.connected = False
        self.ended = True
        return True
