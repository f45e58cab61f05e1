"""What every part of a scenario shares: the message type, the run's clock and context."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from ingest import coords
from ingest.config import Device, SiteConfig
from ingest.readings import Stream
from streetwatch.scenario_geometry import LocalFrame

_WGS84_TO: dict[str, Callable[[float, float], tuple[float, float]]] = {
    "wgs84": lambda lat, lon: (lat, lon),
    "gcj02": coords.wgs84_to_gcj02,
    "bd09": coords.wgs84_to_bd09,
}


@dataclass(frozen=True, slots=True)
class SimMessage:
    at_s: float
    topic: str
    payload: bytes = field(repr=False)
    user_properties: tuple[tuple[str, str], ...] = ()
    fault: str | None = None
    """Set on deliberately bad messages: the dead-letter reason the pipeline should give."""


class _Clock:
    def __init__(self, start: datetime, tz: tzinfo) -> None:
        self.start = start
        self.tz = tz

    def at(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    def iso(self, t: float) -> str:
        return self.at(t).astimezone(self.tz).isoformat(timespec="milliseconds")

    def utc(self, t: float) -> datetime:
        return self.at(t).astimezone(UTC)


@dataclass(slots=True)
class _Context:
    config: SiteConfig
    duration_s: float
    seed: int
    clock: _Clock
    frame: LocalFrame

    def rng(self, device: Device, purpose: str = "") -> random.Random:
        return random.Random(f"{self.seed}/{device.id}/{purpose}")

    def topic(self, device: Device, stream: Stream) -> str:
        if device.topic and not device.has_wildcard_topic and stream is device.streams[0]:
            return device.topic
        return self.config.default_topic(device.id, stream)

    def device_coords(self, device: Device, x: float, y: float) -> tuple[float, float]:
        lat, lon = self.frame.to_latlon(x, y)
        return _WGS84_TO[device.crs.value](lat, lon)

    def times(self, period_s: float, phase_s: float) -> Iterator[float]:
        k = 0
        while (t := phase_s + k * period_s) < self.duration_s:
            yield t
            k += 1
