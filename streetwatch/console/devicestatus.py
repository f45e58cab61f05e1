"""How each device of the site is doing, for the Overview page: its last message, its rate,
its health and its dead letters.

MQTT devices are read from the journal (every reading lands there before its ack: the
readings_device_time index answers "newest" and "how many lately" per device). Cameras the
box analyses are read from their pipeline: the newest analysed frame and the frame counters.
Rates over the last few seconds come from counters sampled at each request (`Rates`): no
thread of its own, nothing kept between requests but a few samples.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from weakref import WeakKeyDictionary

from pydantic import BaseModel, Field

from ingest.config import SiteConfig
from ingest.registry import DeviceRegistry, UnknownTopic

Health = Literal["ok", "warn", "stale", "silent", "down", "waiting", "off"]

ACTIVITY_WINDOW_S = 300.0
"""Readings per minute are counted over this much of the recent past."""
MQTT_STALE_S = 600.0
"""An MQTT device silent for longer is `stale` (sensors report every few minutes at least)."""
CAMERA_STALE_S = 15.0
"""A camera whose newest analysed frame is older is `stale`."""
DEAD_RECENT_S = 3600.0
"""A device with a message refused this recently is `warn` (older ones are only counted)."""
RATE_WINDOW_S = 5.0
MIN_SPAN_S = 0.5


class DeviceStatus(BaseModel):
    id: str
    kind: str
    name: str
    last_message: datetime | None = Field(
        description="Newest reading received (MQTT devices) or frame analysed (cameras)."
    )
    rate: float | None = Field(description="Readings per minute, or analysed frames per second.")
    rate_unit: Literal["/min", "frames/s"]
    health: Health
    detail: str = Field(description="Why the health is what it is, for a person.")
    dead_letters: int = Field(description="Messages on the device's topics refused so far.")


class Rates:
    """Rates of change of a few cumulative counters over the last `window_s` seconds, from
    the samples the callers hand in (one per request)."""

    def __init__(self, window_s: float = RATE_WINDOW_S, keep: int = 256) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def sample(self, now: float, counters: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        """(seconds spanned, change of each counter) since a sample about `window_s` ago (or
        the oldest one at least MIN_SPAN_S old); (0, {}) while there is none."""
        with self._lock:
            while self._samples and now - self._samples[0][0] > 12 * self.window_s:
                self._samples.popleft()
            base = None
            for at, values in self._samples:
                if now - at < MIN_SPAN_S:
                    break
                base = (at, values)
                if now - at <= self.window_s:
                    break
            newest = self._samples[-1][0] if self._samples else None
            if newest is None or now - newest >= 0.2:  # many viewers polling: keep one sample
                self._samples.append((now, dict(counters)))
        if base is None:
            return 0.0, {}
        at, values = base
        return now - at, {k: v - values.get(k, 0.0) for k, v in counters.items()}


@dataclass(frozen=True)
class CameraFigures:
    fps: float | None
    """Analysed frames per second over the last few seconds."""
    read_fps: float | None
    """Frames the reader took from the stream per second (what the camera delivers)."""
    detect_ms: float | None
    """Detector milliseconds per analysed frame over the same seconds (else the newest's)."""


_camera_rates: WeakKeyDictionary[Any, Rates] = WeakKeyDictionary()
_rates_lock = threading.Lock()


def camera_figures(camera: Any, now: float | None = None) -> CameraFigures:
    """Frames/s and detector ms of a running `CameraPipeline`, over the last few seconds."""
    with _rates_lock:
        rates = _camera_rates.get(camera)
        if rates is None:
            rates = _camera_rates[camera] = Rates()
    stats = camera.stats
    source = stats.source
    counters = {
        "frames": float(stats.frames),
        "analysed": float(stats.analysed),
        "detect_ms": float(stats.detect_ms),
        "read": float(source.frames if source is not None else stats.frames),
    }
    span, delta = rates.sample(time.monotonic() if now is None else now, counters)
    live = camera.live
    newest_ms = live.detect_ms if live is not None else None
    if span <= 0:
        return CameraFigures(None, None, newest_ms)
    analysed = delta["analysed"]
    detect_ms = delta["detect_ms"] / analysed if analysed > 0 else newest_ms
    return CameraFigures(analysed / span, delta["read"] / span, detect_ms)


class DeviceStatusReader:
    """Per-device status of one running pipeline; keeps the dead letters' running totals."""

    def __init__(self, config: SiteConfig) -> None:
        self.registry = DeviceRegistry(config)
        self._dead_by_device: dict[str, tuple[int, datetime]] = {}
        """Per device: dead letters so far, and when the newest arrived."""
        self.unrouted_dead_letters = 0
        """Dead letters on topics no device publishes on."""
        self._dead_after = 0
        self._lock = threading.Lock()

    def _count_dead(self, dead_by_topic: Mapping[str, tuple[int, datetime]], newest: int) -> None:
        for topic, (count, at) in dead_by_topic.items():
            try:
                device_id = self.registry.route(topic).device.id
            except UnknownTopic:
                self.unrouted_dead_letters += count
                continue
            total, last = self._dead_by_device.get(device_id, (0, at))
            self._dead_by_device[device_id] = (total + count, max(last, at))
        self._dead_after = newest

    def read(self, pipeline: Any, config: SiteConfig, now: datetime) -> list[DeviceStatus]:
        cameras: Mapping[str, Any] = getattr(pipeline, "cameras", {}) or {}
        journal = getattr(pipeline, "journal", None)
        mqtt_ids = [d.id for d in config.devices if d.id not in cameras]
        activity: Mapping[str, tuple[datetime | None, int]] = {}
        with self._lock:
            if journal is not None:
                since = now - timedelta(seconds=ACTIVITY_WINDOW_S)
                activity, dead, newest = journal.device_activity(mqtt_ids, since, self._dead_after)
                self._count_dead(dead, newest)
            dead_by_device = dict(self._dead_by_device)
        out = []
        for device in config.devices:
            kind, name = device.kind.value, device.name
            dead_letters, dead_at = dead_by_device.get(device.id, (0, None))
            if device.id in cameras:
                status = _camera_status(device.id, kind, name, cameras[device.id], now)
            elif not config.broker.owns(device.id):
                status = DeviceStatus(
                    id=device.id,
                    kind=kind,
                    name=name,
                    last_message=None,
                    rate=None,
                    rate_unit="/min",
                    health="off",
                    detail="another box's partition",
                    dead_letters=0,
                )
            else:
                last, recent = activity.get(device.id, (None, 0))
                status = _mqtt_status(device.id, kind, name, last, recent, journal, now)
            status.dead_letters = dead_letters
            recent = dead_at is not None and (now - dead_at).total_seconds() < DEAD_RECENT_S
            if recent and status.health == "ok":
                status.health = "warn"
                ago = _span(max((now - dead_at).total_seconds(), 0))  # type: ignore[operator]
                status.detail = f"{_count(dead_letters, 'message')} refused, the newest {ago} ago"
            out.append(status)
        return out


def _mqtt_status(
    device_id: str,
    kind: str,
    name: str,
    last: datetime | None,
    recent: int,
    journal: Any,
    now: datetime,
) -> DeviceStatus:
    rate = recent / (ACTIVITY_WINDOW_S / 60) if journal is not None else None
    health: Health
    if journal is None:
        health, detail = "off", "no pipeline running"
    elif last is None:
        health, detail = "silent", "no message received yet"
    elif (age := (now - last).total_seconds()) > MQTT_STALE_S:
        health, detail = "stale", f"silent for {_span(age)}"
    else:
        minutes = ACTIVITY_WINDOW_S / 60
        health, detail = "ok", f"{_count(recent, 'reading')} in the last {minutes:.0f} min"
    return DeviceStatus(
        id=device_id,
        kind=kind,
        name=name,
        last_message=last,
        rate=rate,
        rate_unit="/min",
        health=health,
        detail=detail,
        dead_letters=0,
    )


def _camera_status(
    device_id: str, kind: str, name: str, camera: Any, now: datetime
) -> DeviceStatus:
    figures = camera_figures(camera)
    live = camera.live
    source = camera.stats.source
    errors = sum(camera.stats.errors.values())
    last = live.ts if live is not None else None
    health: Health
    if source is not None and not source.connected and source.failures:
        health, detail = "down", f"stream lost: {source.last_error or 'no frames'}"
    elif live is None:
        health, detail = "waiting", "no frame analysed yet"
    elif (age := (now - live.ts).total_seconds()) > CAMERA_STALE_S:
        health, detail = "stale", f"no frame analysed for {_span(age)}"
    elif errors:
        health, detail = "warn", f"{_count(errors, 'frame')} failed"
    else:
        ms = f", detector {figures.detect_ms:.0f} ms" if figures.detect_ms is not None else ""
        health, detail = "ok", f"frame {live.index}{ms}"
    return DeviceStatus(
        id=device_id,
        kind=kind,
        name=name,
        last_message=last,
        rate=figures.fps,
        rate_unit="frames/s",
        health=health,
        detail=detail,
        dead_letters=0,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


_readers: WeakKeyDictionary[Any, DeviceStatusReader] = WeakKeyDictionary()


def device_statuses(
    pipeline: Any, config: SiteConfig, now: datetime | None = None
) -> tuple[list[DeviceStatus], int]:
    """Every device of `config` (pipeline None: listed, health `off`), and the dead letters on
    topics of no device."""
    now = now or datetime.now(UTC)
    if pipeline is None:
        return DeviceStatusReader(config).read(None, config, now), 0
    with _rates_lock:
        reader = _readers.get(pipeline)
        if reader is None:
            reader = _readers[pipeline] = DeviceStatusReader(getattr(pipeline, "config", config))
    statuses = reader.read(pipeline, config, now)
    return statuses, reader.unrouted_dead_letters
