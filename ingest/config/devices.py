"""The `devices` section: each device, its kind, streams, topic and detector settings."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from ingest.config.common import _WILDCARD, Finite, SafeId, Strict
from ingest.config.detection import (
    CameraDetect,
    GeomagSettings,
    GpsFilters,
    HomographyPair,
    Route,
    _check_homography,
)
from ingest.config.drone_camera import DroneCamera
from ingest.config.jt808 import InputBit, Phone, Protocol
from ingest.config.sensor_metrics import Metrics
from ingest.config.sweeping import Sweeping
from ingest.config.zones import Zone, ZoneKind
from ingest.readings import Stream


class DeviceKind(StrEnum):
    CAMERA = "camera"
    DRONE = "drone"
    GPS = "gps"
    GEOMAGNETIC = "geomagnetic"
    SENSOR = "sensor"
    """Environment and facility sensors: declared `metrics` on the `metrics` stream."""


class Crs(StrEnum):
    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"


STREAMS_OF_KIND: dict[DeviceKind, tuple[Stream, ...]] = {
    DeviceKind.GPS: (Stream.GPS,),
    DeviceKind.GEOMAGNETIC: (Stream.GEOMAG,),
    DeviceKind.DRONE: (Stream.TELEMETRY, Stream.SNAPSHOT),
    DeviceKind.CAMERA: (Stream.SNAPSHOT,),
    DeviceKind.SENSOR: (Stream.METRICS,),
}
FORMATS: dict[Stream, tuple[str, ...]] = {
    Stream.GPS: ("json", "nmea"),
    Stream.GEOMAG: ("json",),
    Stream.TELEMETRY: ("json",),
    Stream.SNAPSHOT: ("jpeg",),
    Stream.METRICS: ("json",),
}


class Location(Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


VIDEO_PUSH = ("webrtc", "mqtt")
"""`stream` values for video the device pushes to us (WHIP offer, JPEG snapshots over MQTT)."""


class Device(Strict):
    id: SafeId
    kind: DeviceKind
    name: str = ""
    format: str | None = None
    """Payload format of the device's main MQTT stream (gps: json | nmea; others: json)."""
    crs: Crs = Crs.WGS84
    topic: str | None = None
    """Own MQTT topic filter (wildcards allowed) instead of streetwatch/{site}/{id}/{stream}."""
    stream: str | None = None
    """Video source of a camera or drone: file path, rtsp://, http(s)://, webrtc or mqtt."""
    location: Location | None = None
    bay: str | None = None
    """Parking bay a geomagnetic sensor watches."""
    zones: list[Zone] = []  # noqa: RUF012 - pydantic copies field defaults
    bay_kind: ZoneKind | None = None
    """What the bay is (e.g. fire_lane): the zone kind of its occupancy observations."""
    geomag: GeomagSettings | None = None
    """Occupancy tuning of a raw geomagnetic sensor (geomagnetic devices only)."""
    filters: GpsFilters | None = None
    """GPS fix filter thresholds (gps devices only)."""
    speed_limit_kmh: Finite | None = Field(None, gt=0, le=300)
    """Speeding above this (gps devices only)."""
    speeding_min_s: Finite = Field(5.0, ge=0)
    """How long the speed stays above the limit before it counts as speeding."""
    route: Route | None = None
    """The approved route corridor (gps devices only)."""
    sweeping: Sweeping | None = None
    """Road segments a sanitation vehicle must sweep each day (gps devices only)."""
    protocol: Protocol = Protocol.MQTT
    """How a gps device reports: MQTT, or a JT/T 808 vehicle terminal over TCP."""
    phone: Phone | None = None
    """The JT/T 808 terminal phone number (`protocol: jt808`)."""
    inputs: dict[str, InputBit] = {}  # noqa: RUF012 - pydantic copies field defaults
    """Named inputs of a JT/T 808 terminal, e.g. `dump_raised: io:0`: rules see them."""
    detect: CameraDetect | None = None
    """Video detection settings (cameras and drones with a `stream`)."""
    homography: Annotated[
        list[HomographyPair] | None, AfterValidator(lambda v: v and _check_homography(v))
    ] = None
    """Image↔ground point pairs (4 or more) mapping a footprint to lon/lat."""
    fov: DroneCamera | None = None
    """A drone camera's field of view and error budget: it places what the drone sees on the
    ground (drones with `detect` only, required there)."""
    metrics: Metrics | None = None
    """What a sensor measures: name -> {unit, min, max} (sensor devices only, required there)."""
    facility: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,31}$")
    """What a sensor watches (bin, toilet, construction_site, water_gauge): the subject its
    threshold episodes have, so catalog rules can name it (sensor devices only)."""

    @field_validator("metrics", "facility")
    @classmethod
    def _sensor_only(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if value is not None and kind is not None and kind is not DeviceKind.SENSOR:
            raise ValueError(f"{info.field_name} is for sensor devices, not a {kind.value} device")
        return value

    @model_validator(mode="after")
    def _drone_camera_fov(self) -> Device:
        if self.fov is not None and self.kind is not DeviceKind.DRONE:
            raise ValueError(f"fov is for drone devices, not a {self.kind.value} device")
        if self.kind is DeviceKind.DRONE and self.detect is not None and self.fov is None:
            raise ValueError(
                "a drone with `detect` needs `fov` (e.g. fov: {hfov_deg: 82}): its camera's "
                "field of view places what it sees on the ground"
            )
        return self

    @model_validator(mode="after")
    def _sensor_declares_metrics(self) -> Device:
        if self.kind is DeviceKind.SENSOR and not self.metrics:
            raise ValueError(
                "a sensor device declares its metrics, e.g. "
                'metrics: {fill_pct: {unit: "%", min: 0, max: 100}}'
            )
        return self

    @field_validator("detect", "homography")
    @classmethod
    def _video_only(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if value is not None and kind not in (None, DeviceKind.CAMERA, DeviceKind.DRONE):
            raise ValueError(f"{info.field_name} is for camera and drone devices, not {kind}")
        return value

    @field_validator("bay_kind", "geomag", "filters", "speed_limit_kmh", "route", "sweeping")
    @classmethod
    def _settings_fit_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        geomag = info.field_name in ("bay_kind", "geomag")
        wanted = DeviceKind.GEOMAGNETIC if geomag else DeviceKind.GPS
        if value is not None and kind is not None and kind is not wanted:
            raise ValueError(
                f"{info.field_name} is for {wanted.value} devices, not a {kind.value} device"
            )
        return value

    @model_validator(mode="after")
    def _jt808_fits(self) -> Device:
        if self.protocol is Protocol.JT808:
            if self.kind is not DeviceKind.GPS:
                raise ValueError(
                    f"protocol jt808 is for gps devices, not a {self.kind.value} device"
                )
            if self.phone is None:
                raise ValueError("protocol jt808 needs the terminal's `phone` number")
        elif self.phone is not None or self.inputs:
            raise ValueError("phone and inputs are for devices with `protocol: jt808`")
        for name in self.inputs:
            if not name.isidentifier():
                raise ValueError(f"input name {name!r}: letters, digits and '_' (e.g. dump_raised)")
        return self

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value or "\0" in value or len(value.encode()) > 1024:
            raise ValueError("topic must be 1-1024 bytes without NUL")
        levels = value.split("/")
        for index, level in enumerate(levels):
            if "#" in level and (level != "#" or index != len(levels) - 1):
                raise ValueError("'#' must be a whole level and the last one")
            if "+" in level and level != "+":
                raise ValueError("'+' must be a whole level")
        if value.startswith("$"):
            raise ValueError("topics starting with '$' are reserved by the broker")
        return value

    @field_validator("format")
    @classmethod
    def _format_fits_kind(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if value is None or kind is None:
            return value
        allowed = FORMATS[STREAMS_OF_KIND[kind][0]]
        if value not in allowed:
            raise ValueError(
                f"format {value!r} does not fit a {kind.value} device; "
                f"expected one of: {', '.join(allowed)}"
            )
        return value

    @model_validator(mode="after")
    def _default_format(self) -> Device:
        if self.format is None:
            object.__setattr__(self, "format", FORMATS[self.streams[0]][0])
        return self

    @property
    def streams(self) -> tuple[Stream, ...]:
        return STREAMS_OF_KIND[self.kind]

    def format_of(self, stream: Stream) -> str:
        return self.format if stream is self.streams[0] and self.format else FORMATS[stream][0]

    @property
    def has_wildcard_topic(self) -> bool:
        return self.topic is not None and bool(_WILDCARD.search(self.topic))
