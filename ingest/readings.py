"""The records ingestion emits: one Reading per decoded sensor sample.

Every reading keeps two clocks: `device_ts` (what the device says, possibly wrong) and
`received_ts` (the box's clock at receipt). `time_flag` says when the device clock is not
plausible; downstream stages decide whether to fall back to `received_ts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Stream(StrEnum):
    GPS = "gps"
    GEOMAG = "geomag"
    TELEMETRY = "telemetry"
    SNAPSHOT = "snapshot"
    METRICS = "metrics"


class TimeFlag(StrEnum):
    OK = "ok"
    FUTURE = "future"
    PAST = "past"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class GpsFix:
    lat: float
    lon: float
    speed_kmh: float | None = None
    heading: float | None = None
    hdop: float | None = None
    sats: int | None = None
    valid: bool = True
    source: str = "json"  # "json", "nmea-rmc", "nmea-gga", "nmea" (RMC and GGA merged)
    attributes: dict[str, Any] | None = None
    """What a vehicle terminal adds (JT/T 808: alarm and status flags, named inputs, altitude,
    mileage, fuel, signal; unknown items raw), as plain JSON data."""


NMEA_SOURCES = frozenset({"nmea", "nmea-rmc", "nmea-gga"})
"""Sources whose fixes may arrive in parts (one sentence per message) and are merged by key."""


def _first(a: Any, b: Any) -> Any:
    return a if a is not None else b


def merge_fixes(first: GpsFix, second: GpsFix) -> GpsFix:
    """Two parts of one fix (an RMC and a GGA of the same instant, or a repeat of either): each
    field from the part that has it (RMC: speed, course; GGA: hdop, satellites), the RMC's
    position, valid only if both parts say so. Merging a part into itself changes nothing."""
    position = second if first.source == "nmea-gga" and second.source == "nmea-rmc" else first
    return GpsFix(
        position.lat,
        position.lon,
        _first(first.speed_kmh, second.speed_kmh),
        _first(first.heading, second.heading),
        _first(first.hdop, second.hdop),
        _first(first.sats, second.sats),
        first.valid and second.valid,
        first.source if first.source == second.source else "nmea",
    )


@dataclass(frozen=True, slots=True)
class GeomagField:
    x: float
    y: float
    z: float


@dataclass(frozen=True, slots=True)
class GeomagState:
    occupied: bool


@dataclass(frozen=True, slots=True)
class DroneTelemetry:
    lat: float
    lon: float
    alt_m: float
    heading: float | None = None
    gimbal_pitch: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    jpeg: bytes = field(repr=False)
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Metric:
    """One value of one metric a `kind: sensor` device declares (fill_pct, nh3_ppm, ...)."""

    name: str
    value: float
    unit: str = ""


Payload = GpsFix | GeomagField | GeomagState | DroneTelemetry | Snapshot | Metric

PAYLOAD_KINDS: dict[str, type] = {
    "gps": GpsFix,
    "geomag_field": GeomagField,
    "geomag_state": GeomagState,
    "telemetry": DroneTelemetry,
    "snapshot": Snapshot,
    "metric": Metric,
}
_KIND_OF: dict[type, str] = {cls: kind for kind, cls in PAYLOAD_KINDS.items()}


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded sample from one device.

    `key` identifies the reading across redeliveries, so the same message delivered twice
    yields the same keys and the journal stores it once. Most readings are keyed by the MQTT
    topic, the payload bytes and the reading's index inside the message; an NMEA fix by device
    and fix time (its RMC and GGA may come in separate messages: the journal merges them);
    a snapshot by device, capture time and content (see ingest.decoders.base).
    """

    key: str
    device_id: str
    stream: Stream
    device_ts: datetime | None
    received_ts: datetime
    time_flag: TimeFlag
    payload: Payload

    @property
    def kind(self) -> str:
        return _KIND_OF[type(self.payload)]

    @property
    def event_ts(self) -> datetime:
        """The time to use for event-time processing: device time when plausible."""
        if self.time_flag is TimeFlag.OK and self.device_ts is not None:
            return self.device_ts
        return self.received_ts

    def payload_dict(self) -> dict[str, Any]:
        """The payload as plain data (JPEG bytes excluded), for the journal and sinks."""
        payload = self.payload
        return {name: getattr(payload, name) for name in payload.__slots__ if name != "jpeg"}
