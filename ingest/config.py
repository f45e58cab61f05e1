"""The site description, `devices.yaml`: schema, loading and cross-checks.

Validated once at start-up; every error names file, line and field. Secrets never live in the
file: the broker credentials are the *names* of environment variables.
"""

from __future__ import annotations

import re
import zlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    ValidationInfo,
    field_validator,
    model_validator,
)
from shapely.geometry import Polygon
from shapely.validation import explain_validity

from ingest.readings import Stream
from ingest.secrets import SecretError, read_secret
from ingest.yamlsource import ConfigError, format_loc, load_yaml, validate

SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_SAFE_ID = re.compile(SAFE_ID)


def _safe_id(value: str) -> str:
    if not _SAFE_ID.fullmatch(value):
        raise ValueError(
            "ids are 1-64 letters, digits, '-' or '_', starting with a letter or digit "
            "(they become file names and topic levels)"
        )
    return value


SafeId = Annotated[str, AfterValidator(_safe_id)]
"""Ids that end up in file paths and topics: no '/', '.', '..', spaces, '+', '#'."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceKind(StrEnum):
    CAMERA = "camera"
    DRONE = "drone"
    GPS = "gps"
    GEOMAGNETIC = "geomagnetic"


class Crs(StrEnum):
    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"


STREAMS_OF_KIND: dict[DeviceKind, tuple[Stream, ...]] = {
    DeviceKind.GPS: (Stream.GPS,),
    DeviceKind.GEOMAGNETIC: (Stream.GEOMAG,),
    DeviceKind.DRONE: (Stream.TELEMETRY, Stream.SNAPSHOT),
    DeviceKind.CAMERA: (Stream.SNAPSHOT,),
}
FORMATS: dict[Stream, tuple[str, ...]] = {
    Stream.GPS: ("json", "nmea"),
    Stream.GEOMAG: ("json",),
    Stream.TELEMETRY: ("json",),
    Stream.SNAPSHOT: ("jpeg",),
}


class Site(Strict):
    id: SafeId
    name: str = ""
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r} (e.g. 'Asia/Shanghai')") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Tls(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    """Skip hostname verification. For lab brokers with self-signed certificates only."""

    @model_validator(mode="after")
    def _pairs(self) -> Tls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate and its key)")
        return self


class Reconnect(Strict):
    min_delay_s: float = Field(1.0, gt=0, allow_inf_nan=False)
    max_delay_s: float = Field(60.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Reconnect:
        if self.min_delay_s > self.max_delay_s:
            raise ValueError("min_delay_s is larger than max_delay_s")
        return self


class Partition(Strict):
    """This worker's share of the site's devices when several workers split one site."""

    index: int = Field(ge=0)
    count: int = Field(ge=1, le=1024)

    @model_validator(mode="after")
    def _index_below_count(self) -> Partition:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count} (0-based)")
        return self

    def owns(self, device_id: str) -> bool:
        """Stable across processes and restarts (CRC-32 of the id, not Python's hash)."""
        return zlib.crc32(device_id.encode()) % self.count == self.index


class Broker(Strict):
    url: str = "mqtt://127.0.0.1:1883"
    """`mqtt://host:port`, `mqtts://host:port` (TLS), or `embedded` for the in-process broker."""
    client_id: SafeId = "streetwatch"
    username_env: str | None = None
    password_env: str | None = None
    tls: Tls | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    """How long the broker keeps our subscriptions and queued QoS 1 messages while we are away."""
    shared_group: SafeId | None = None
    """Join an MQTT v5 shared subscription group (`$share/<group>/...`) to split load."""
    receive_maximum: int = Field(1000, ge=1, le=65535)
    reconnect: Reconnect = Reconnect()
    embedded_port: int = Field(1883, ge=1, le=65535)
    """With `url: embedded`: the loopback port of the broker `streetwatch run` starts itself."""
    partition: Partition | None = None
    """Split the site by device: this worker subscribes to, and runs the cameras of, only the
    devices it owns, so every device's whole stream reaches one worker's detectors."""

    username: Any = Field(None, exclude=True, repr=False)
    password: Any = Field(None, exclude=True, repr=False)

    @field_validator("username", "password")
    @classmethod
    def _no_secrets_in_file(cls, value: Any, info: ValidationInfo) -> None:
        if value is not None:
            raise ValueError(
                f"secrets are not read from the file; export the {info.field_name} in an "
                f"environment variable and name that variable in '{info.field_name}_env'"
            )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value == "embedded":
            return value
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "credentials are not read from the url; name environment variables in "
                "username_env and password_env"
            )
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError("expected 'embedded' or mqtt://host:port or mqtts://host:port")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("port is not a number in 0-65535") from None
        return value

    @model_validator(mode="after")
    def _one_way_to_split(self) -> Broker:
        if self.partition is not None and self.shared_group is not None:
            raise ValueError(
                "shared_group and partition both split the load; choose one (partition keeps "
                "each device's stream on one worker, which the detectors need)"
            )
        return self

    def owns(self, device_id: str) -> bool:
        return self.partition is None or self.partition.owns(device_id)

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"

    @property
    def uses_tls(self) -> bool:
        return self.tls is not None or urlsplit(self.url).scheme in ("mqtts", "ssl")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        if self.embedded:
            return self.embedded_port
        parts = urlsplit(self.url)
        return parts.port or (8883 if self.uses_tls else 1883)

    @property
    def connect_url(self) -> str:
        """Where clients connect: the url, or the embedded broker's loopback address."""
        return f"mqtt://127.0.0.1:{self.embedded_port}" if self.embedded else self.url

    def credentials(self) -> tuple[str | None, str | None]:
        """Username and password from the environment; a named but unset variable is an error."""
        values = []
        for name in (self.username_env, self.password_env):
            if name is None:
                values.append(None)
                continue
            try:
                value = read_secret(name)
            except SecretError as exc:
                raise ConfigError([f"broker: {exc}"]) from None
            if value is None:
                raise ConfigError([f"broker: environment variable {name} is named but not set"])
            values.append(value)
        return values[0], values[1]


class Ingest(Strict):
    max_payload_bytes: int = Field(256 * 1024, ge=1024)
    max_snapshot_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_clock_future_s: float = Field(300.0, ge=0)
    max_clock_past_s: float = Field(7 * 24 * 3600.0, ge=0)
    batch_size: int = Field(500, ge=1, le=50_000)
    flush_interval_ms: int = Field(50, ge=1, le=10_000)
    dead_letter_payload_bytes: int = Field(4096, ge=0, le=1024 * 1024)


class Storage(Strict):
    root: Path = Path("var")
    journal: Path | None = None
    evidence: Path | None = None
    min_free_mb: int = Field(32, ge=0)
    """Free space to keep on the storage disk: below it, new writes wait (messages stay
    unacknowledged, cases unpackaged) with a clear error instead of failing halfway."""

    def resolved(self, base: Path) -> Storage:
        root = self.root if self.root.is_absolute() else base / self.root
        return Storage(
            root=root,
            journal=_under(base, self.journal, root / "journal.sqlite"),
            evidence=_under(base, self.evidence, root / "evidence"),
            min_free_mb=self.min_free_mb,
        )


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Timeseries(Strict):
    """Shipping the journal to PostgreSQL/TimescaleDB (streetwatch/sink)."""

    dsn_env: str = "STREETWATCH_PG_DSN"
    """Name of the environment variable that holds the libpq DSN (secrets stay out of the file)."""
    origin: SafeId | None = None
    """This box's name in the database's cursor table; defaults to site.id."""
    batch_size: int = Field(20_000, ge=1, le=500_000)
    flush_interval_ms: int = Field(500, ge=1, le=60_000)
    retry: Reconnect = Reconnect(min_delay_s=0.5, max_delay_s=60.0)
    journal_warn_bytes: int = Field(2 * 1024**3, ge=1024 * 1024)
    """Warn (and count) once the journal file grows past this while rows wait to be shipped."""
    chunk_interval_h: int = Field(24, ge=1, le=24 * 366)
    synchronous_commit: bool = False
    """Off by default: the cursor commits with its rows, so a commit lost in a database crash
    loses rows and cursor together, and the sink ships them again when it reconnects."""
    compress_after_days: int | None = Field(7, ge=1)
    retention_days: int | None = Field(400, ge=1)

    dsn: Any = Field(None, exclude=True, repr=False)

    @field_validator("dsn")
    @classmethod
    def _no_dsn_in_file(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "secrets are not read from the file; export the DSN in an environment "
                "variable and name that variable in 'dsn_env'"
            )

    @field_validator("dsn_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(
                "expected the name of an environment variable, e.g. STREETWATCH_PG_DSN"
            )
        return value

    @model_validator(mode="after")
    def _compress_before_drop(self) -> Timeseries:
        if (
            self.compress_after_days is not None
            and self.retention_days is not None
            and self.compress_after_days >= self.retention_days
        ):
            raise ValueError("compress_after_days must be smaller than retention_days")
        return self

    def resolve_dsn(self) -> str:
        try:
            value = read_secret(self.dsn_env)
        except SecretError as exc:
            raise ConfigError([f"timeseries: {exc}"]) from None
        if not value:
            raise ConfigError([f"timeseries: environment variable {self.dsn_env} is not set"])
        return value


class EvidenceBlur(Strict):
    """Blur bystanders' faces in the annotated snapshot copies (raw copies stay sealed as shot)."""

    enabled: bool = False
    model: Path | None = None
    """OpenCV face detector: a YuNet .onnx (cv2.FaceDetectorYN) or a Haar cascade .xml."""
    min_score: float = Field(0.6, gt=0, le=1)


class EvidenceHttpFeed(Strict):
    url: str
    """The case system's endpoint; each case is POSTed here with an Idempotency-Key header."""
    token_env: str | None = None
    """Name of the environment variable holding the bearer token (secrets stay out of the file)."""
    media: str = Field("reference", pattern="^(upload|reference)$")
    """upload: multipart POST with every file; reference: JSON with media_base_url links."""
    media_base_url: str | None = None
    timeout_s: float = Field(10.0, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http://host[:port]/path or https://...")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials are not read from the url; name token_env instead")
        return value

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("expected the name of an environment variable, e.g. CASE_TOKEN")
        return value


class EvidenceMqttFeed(Strict):
    topic: str = "streetwatch/{site}/cases"
    """Where each case is published (QoS 1, not retained); {site} is replaced by site.id."""

    @field_validator("topic")
    @classmethod
    def _publish_topic(cls, value: str) -> str:
        _check_publish_topic(value.replace("{site}", "site"))
        return value


class EvidenceFeed(Strict):
    http: EvidenceHttpFeed | None = None
    mqtt: EvidenceMqttFeed | None = None
    retry: Reconnect = Reconnect(min_delay_s=1.0, max_delay_s=600.0)
    outbox: Path | None = None
    """The persistent outbox (SQLite); default <storage root>/case_outbox.sqlite."""


class Evidence(Strict):
    """Evidence packages, the case store and the case feed (evidence/)."""

    key: Path | None = None
    """The box's Ed25519 key (PEM, 0600); default <storage root>/keys/box_ed25519.pem."""
    cases: Path | None = None
    """The case store (SQLite); default <storage root>/cases.sqlite."""
    quota_bytes: int | None = Field(None, ge=1024 * 1024)
    """Disk budget for packages; the oldest closed cases are pruned past it (open ones never)."""
    retention_days: float | None = Field(None, gt=0)
    """Prune packages of closed cases older than this."""
    clip_crf: int = Field(26, ge=0, le=51)
    clip_preset: str = Field(
        "ultrafast",
        pattern="^(ultrafast|superfast|veryfast|faster|fast|medium|slow|slower|veryslow)$",
    )
    """x264 preset. ultrafast: about 0.75 s and 1.2 CPU-s per 30 s clip on 2 cores, 4 MB;
    veryfast: 1.5 s, 2.1 CPU-s, 1.3 MB. CPU is scarcer than disk on the box."""
    blur: EvidenceBlur = EvidenceBlur()
    feed: EvidenceFeed = EvidenceFeed()


def _under(base: Path, value: Path | None, default: Path) -> Path:
    if value is None:
        return default
    return value if value.is_absolute() else base / value


Coordinate = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Point = tuple[Coordinate, Coordinate]
"""Strict numbers: a quoted '12' or a `true` in a polygon is a typo, not a coordinate."""


def _check_polygon(points: list[Point], what: str) -> list[Point]:
    if len(points) < 3:
        raise ValueError(f"{what} needs at least 3 points, got {len(points)}")
    if len(set(points)) < 3:
        raise ValueError(f"{what} has fewer than 3 distinct points")
    polygon = Polygon(points)
    if polygon.convex_hull.area <= 0:
        raise ValueError(f"{what} is not a valid polygon: its points lie on one line (no area)")
    if not polygon.is_valid:
        raise ValueError(
            f"{what} is not a valid polygon: {explain_validity(polygon)} "
            "(edges must not cross or touch: list the corners in order round the outline)"
        )
    if polygon.area <= 0:
        raise ValueError(f"{what} has zero area")
    return points


MAX_PIXEL = 65535
"""Largest pixel coordinate of a camera zone (JPEG's and most codecs' largest frame side)."""


def _check_pixels(points: list[Point]) -> None:
    for x, y in points:
        if not (0 <= x <= MAX_PIXEL and 0 <= y <= MAX_PIXEL):
            raise ValueError(
                f"point [{x}, {y}] is not a pixel [x, y] of the image (0-{MAX_PIXEL}; "
                "camera zones are in image pixels)"
            )


def _check_lonlat(points: list[Point]) -> None:
    for lon, lat in points:
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError(f"point [{lon}, {lat}] is not [lon, lat] in degrees")


class Merchant(Strict):
    id: SafeId
    name: str
    licence_no: str
    address: str = ""
    contact: str = ""
    shopfront: list[Point]
    """The shop's frontage as a WGS-84 [lon, lat] polygon (the door line and what lies in front)."""

    @field_validator("shopfront")
    @classmethod
    def _polygon(cls, value: list[Point]) -> list[Point]:
        _check_lonlat(value)
        return _check_polygon(value, "shopfront")


class ZoneKind(StrEnum):
    SHOPFRONT = "shopfront"
    NO_PARKING = "no_parking"
    FIRE_LANE = "fire_lane"
    SIDEWALK = "sidewalk"
    RESTRICTED = "restricted"
    GEOFENCE = "geofence"


class Zone(Strict):
    id: SafeId
    kind: ZoneKind
    polygon: list[Point]
    """Pixel [x, y] for cameras; WGS-84 [lon, lat] for GPS and drone geofences."""
    merchant: SafeId | None = None

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, value: list[Point], info: ValidationInfo) -> list[Point]:
        zone = info.data.get("id")
        return _check_polygon(value, f"zone {zone!r} polygon" if zone else "zone polygon")

    @model_validator(mode="after")
    def _merchant(self) -> Zone:
        if self.kind is ZoneKind.SHOPFRONT and self.merchant is None:
            raise ValueError("a shopfront zone names its merchant (merchant: <merchant id>)")
        return self


class Location(Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


Finite = Annotated[float, Field(allow_inf_nan=False)]


class GeomagSettings(Strict):
    """Occupancy detection of a raw geomagnetic sensor (x/y/z in µT); see detectors/geomag.py."""

    enter_ut: Finite = Field(10.0, gt=0)
    """Deviation from the vacant baseline (vector magnitude, µT) at which a car may be there."""
    exit_ut: Finite = Field(5.0, gt=0)
    """Deviation below which the bay may be vacant again; below enter_ut (hysteresis)."""
    min_occupied_s: Finite = Field(4.0, ge=0)
    """How long the deviation stays above enter_ut before the bay counts as occupied."""
    min_vacant_s: Finite = Field(6.0, ge=0)
    """How long it stays below exit_ut before the bay counts as vacant again."""
    drift_tau_s: Finite = Field(900.0, gt=0)
    """Time constant of the baseline following slow drift (temperature), only while vacant."""
    stale_after_s: Finite = Field(180.0, gt=0)
    """No reading for this long: a `stale` device-health observation."""
    flat_after_s: Finite = Field(120.0, gt=0)
    """Identical readings for this long: a `flat_line` device-health observation."""
    flat_epsilon_ut: Finite = Field(0.01, ge=0)
    """Readings closer than this on every axis count as identical."""
    baseline_ut: tuple[Finite, Finite, Finite] | None = None
    """The empty bay's field measured at installation; else the first readings are taken."""

    @model_validator(mode="after")
    def _hysteresis(self) -> GeomagSettings:
        if self.exit_ut >= self.enter_ut:
            raise ValueError(
                f"exit_ut ({self.exit_ut}) must be below enter_ut ({self.enter_ut}): "
                "the gap between them is the hysteresis that stops flicker"
            )
        return self


class GpsFilters(Strict):
    """Fix filters applied before geofences and speed (as GPS trackers such as Traccar do)."""

    max_hdop: Finite | None = Field(5.0, gt=0)
    """Fixes with a larger horizontal dilution of precision are dropped (None: no check)."""
    min_sats: int | None = Field(4, ge=0, le=99)
    """Fixes from fewer satellites are dropped (None: no check)."""
    max_speed_kmh: Finite = Field(180.0, gt=0)
    """A jump from the last good fix implying a higher speed is dropped as an outlier."""
    max_future_s: Finite = Field(10.0, ge=0)
    """A fix timestamped further than this after its arrival is dropped."""
    stale_after_s: Finite = Field(300.0, gt=0)
    """No fix for this long: a `stale` device-health observation."""


class Route(Strict):
    """An approved route: the corridor within `buffer_m` metres of a WGS-84 [lon, lat] line."""

    line: list[Point]
    buffer_m: Finite = Field(30.0, gt=0, le=10_000)
    """How far from the line (either side, metres) the vehicle may be and still be on route."""
    min_off_s: Finite = Field(10.0, ge=0)
    """How long the vehicle stays outside the corridor before it counts as off route."""

    @field_validator("line")
    @classmethod
    def _line(cls, value: list[Point]) -> list[Point]:
        if len(value) < 2:
            raise ValueError(f"a route line needs at least 2 points, got {len(value)}")
        _check_lonlat(value)
        if len(set(value)) < 2:
            raise ValueError("a route line has zero length (all points are the same)")
        return value


class MotionGate(Strict):
    """Frame differencing in front of the detector (see detectors/motion.py)."""

    enabled: bool = True
    threshold: int = Field(25, ge=1, le=255)
    """Grey-level change (0-255) for a pixel to count as moved."""
    min_area_px: int = Field(400, ge=1)
    """Smallest moved region worth running the detector on, in full-frame pixels."""
    width: int = Field(320, ge=64, le=4096)
    """Frames are compared downscaled to this width."""


class CameraDetect(Strict):
    """Detection, tracking and dwell of one camera or drone video stream (detectors/camera.py)."""

    weights: Path
    """YOLO weights ultralytics accepts: .pt, .onnx or an OpenVINO *_openvino_model folder."""
    imgsz: int = Field(640, ge=32, le=4096, multiple_of=32)
    conf: Finite = Field(0.35, gt=0, lt=1)
    iou: Finite = Field(0.5, gt=0, lt=1)
    classes: dict[str, str] = {}
    """Model class name → subject (person, bicycle, car, goods, ...); unlisted classes are
    ignored. Empty: every class, named as the model names it."""
    fps: Finite | None = Field(None, gt=0, le=120)
    """Frames analysed per second (None: every frame the source delivers)."""
    redetect_s: Finite = Field(5.0, gt=0, le=600)
    """Full-frame detection cadence that re-confirms stationary subjects."""
    stationary_misses: int = Field(3, ge=1, le=100)
    """Full-frame checks in a row that miss a stationary track before it ends."""
    lost_s: Finite = Field(2.0, gt=0, le=600)
    """A moving track unseen for this long has left."""
    zone_margin_px: Finite = Field(12.0, ge=0)
    """Hysteresis: a footprint must leave the polygon by this much before it has left."""
    zone_exit_s: Finite = Field(1.0, ge=0)
    """... and stay out this long."""
    emit_interval_s: Finite = Field(1.0, gt=0)
    """Observations per situation at most this often (and on every change)."""
    preroll_s: Finite = Field(10.0, ge=0, le=600)
    """Seconds of encoded frames kept for evidence clips."""
    jpeg_quality: int = Field(80, ge=10, le=100)
    motion: MotionGate = MotionGate()


class HomographyPair(Strict):
    """One image point and where it lies on the ground (WGS-84)."""

    pixel: Point
    geo: Point
    """[lon, lat]"""

    @field_validator("geo")
    @classmethod
    def _lonlat(cls, value: Point) -> Point:
        _check_lonlat([value])
        return value


def _check_homography(pairs: list[HomographyPair]) -> list[HomographyPair]:
    if len(pairs) < 4:
        raise ValueError(f"a homography needs at least 4 pixel/geo pairs, got {len(pairs)}")
    for what in ("pixel", "geo"):
        points = [getattr(pair, what) for pair in pairs]
        if len(set(points)) < len(points):
            raise ValueError(f"two pairs share the same {what} point")
        if Polygon(points).convex_hull.area <= 0:
            raise ValueError(f"the {what} points lie on one line; spread them over the ground")
    return pairs


VIDEO_PUSH = ("webrtc", "mqtt")
"""`stream` values for video the device pushes to us (WHIP offer, JPEG snapshots over MQTT)."""

_WILDCARD = re.compile(r"[+#]")


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching (`+` one level, `#` the rest), as the broker does it."""
    want, have = pattern.split("/"), topic.split("/")
    for index, level in enumerate(want):
        if level == "#":
            return True
        if index >= len(have) or (level != "+" and level != have[index]):
            return False
    return len(want) == len(have)


def _check_publish_topic(value: str) -> None:
    """A topic we publish on: a name, never a filter."""
    if not value or "\0" in value or len(value.encode()) > 1024:
        raise ValueError("topic must be 1-1024 bytes without NUL")
    if _WILDCARD.search(value):
        raise ValueError(
            f"topic {value!r} contains an MQTT wildcard ('+' or '#'): a publish topic is one "
            "exact topic name, not a filter"
        )
    if value.startswith("$"):
        raise ValueError("topics starting with '$' are reserved by the broker")


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
    zones: list[Zone] = []
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
    detect: CameraDetect | None = None
    """Video detection settings (cameras and drones with a `stream`)."""
    homography: Annotated[
        list[HomographyPair] | None, AfterValidator(lambda v: v and _check_homography(v))
    ] = None
    """Image↔ground point pairs (4 or more) mapping a footprint to lon/lat."""

    @field_validator("detect", "homography")
    @classmethod
    def _video_only(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if value is not None and kind not in (None, DeviceKind.CAMERA, DeviceKind.DRONE):
            raise ValueError(f"{info.field_name} is for camera and drone devices, not {kind}")
        return value

    @field_validator("bay_kind", "geomag", "filters", "speed_limit_kmh", "route")
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


class SiteConfig(Strict):
    site: Site
    broker: Broker = Broker()
    ingest: Ingest = Ingest()
    storage: Storage = Storage()
    timeseries: Timeseries | None = None
    evidence: Evidence = Evidence()
    merchants: list[Merchant] = []
    devices: list[Device]

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> SiteConfig:
        if (info.context or {}).get("defer_cross_checks"):
            return self
        problems = self.cross_check_problems()
        if problems:
            raise ValueError("; ".join(f"{format_loc(loc)}: {why}" for loc, why in problems))
        return self

    def cross_check_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Checks across sections (unique ids, merchants that exist), each with its location."""
        problems = _duplicates([m.id for m in self.merchants], ("merchants",), "merchant id")
        problems += _duplicates([d.id for d in self.devices], ("devices",), "device id")
        merchant_ids = {m.id for m in self.merchants}
        for index, device in enumerate(self.devices):
            where = ("devices", index, "zones")
            problems += _duplicates([z.id for z in device.zones], where, "zone id")
            for z_index, zone in enumerate(device.zones):
                if zone.merchant is not None and zone.merchant not in merchant_ids:
                    known = ", ".join(sorted(merchant_ids)) or "none defined"
                    problems.append(
                        (
                            (*where, z_index, "merchant"),
                            f"zone {zone.id}: merchant {zone.merchant!r} is not in merchants"
                            f" ({known})",
                        )
                    )
                geofence = device.kind in (DeviceKind.GPS, DeviceKind.DRONE)
                if not geofence and device.kind is not DeviceKind.CAMERA:
                    continue
                try:
                    (_check_lonlat if geofence else _check_pixels)(zone.polygon)
                except ValueError as exc:
                    why = f"zone {zone.id!r}: {exc}"
                    problems.append(
                        (
                            (*where, z_index, "polygon"),
                            f"{why} (geofences are WGS-84)" if geofence else why,
                        )
                    )
        topics = [(i, d.topic) for i, d in enumerate(self.devices) if d.topic]
        feed = self.evidence.feed.mqtt
        if feed is not None:
            cases = feed.topic.replace("{site}", self.site.id)
            if topic_matches(f"streetwatch/{self.site.id}/+/+", cases):
                problems.append(
                    (
                        ("evidence", "feed", "mqtt", "topic"),
                        f"topic {cases!r} is in the devices' own namespace "
                        f"(streetwatch/{self.site.id}/<device>/<stream>): the box would ingest "
                        "its own cases",
                    )
                )
            for index, topic in topics:
                if topic_matches(topic, cases):
                    problems.append(
                        (
                            ("devices", index, "topic"),
                            f"topic {topic!r} also matches the case feed's topic {cases!r}: "
                            "the box would ingest its own cases",
                        )
                    )
        seen: dict[str, int] = {}
        for index, topic in topics:
            if topic in seen:
                problems.append(
                    (
                        ("devices", index, "topic"),
                        f"topic {topic!r} appears twice (first at devices[{seen[topic]}])",
                    )
                )
            seen.setdefault(topic, index)
        return problems

    def device(self, device_id: str) -> Device | None:
        return self._by_id.get(device_id)

    @property
    def _by_id(self) -> dict[str, Device]:
        cache = self.__dict__.get("_device_index")
        if cache is None:
            cache = {d.id: d for d in self.devices}
            self.__dict__["_device_index"] = cache
        return cache

    def default_topic(self, device_id: str, stream: Stream) -> str:
        return f"streetwatch/{self.site.id}/{device_id}/{stream.value}"

    def merchant(self, merchant_id: str) -> Merchant | None:
        return next((m for m in self.merchants if m.id == merchant_id), None)


def _duplicates(
    values: list[str], where: tuple[str | int, ...], what: str
) -> list[tuple[tuple[str | int, ...], str]]:
    first: dict[str, int] = {}
    problems = []
    for index, value in enumerate(values):
        if value in first:
            problems.append(
                (
                    (*where, index, "id"),
                    f"{what} {value!r} appears twice (first at [{first[value]}])",
                )
            )
        first.setdefault(value, index)
    return problems


def load_config(path: str | Path) -> SiteConfig:
    """Load and validate devices.yaml; storage paths are resolved against the file's folder."""
    path = Path(path)
    doc = load_yaml(path)
    if doc.data is not None and not isinstance(doc.data, dict):
        raise ConfigError([f"{path}:1: expected a mapping with site, broker, devices, ..."])
    config: SiteConfig = validate(doc, SiteConfig, defer_cross_checks=True)
    problems = config.cross_check_problems()
    if problems:
        raise ConfigError([f"{doc.where(loc)}: {format_loc(loc)}: {why}" for loc, why in problems])
    base = path.resolve().parent
    storage = config.storage.resolved(base)
    devices = [_resolve_video_paths(device, base) for device in config.devices]
    return config.model_copy(update={"storage": storage, "devices": devices})


def _resolve_video_paths(device: Device, base: Path) -> Device:
    """Relative video files and weights are relative to devices.yaml (existence is checked
    when the camera starts: a copied config need not carry its model)."""
    update: dict[str, Any] = {}
    stream = device.stream
    if stream and stream not in VIDEO_PUSH and "://" not in stream and stream[0] != "/":
        update["stream"] = str(base / stream)
    if device.detect is not None:
        weights = _under(base, device.detect.weights, device.detect.weights)
        update["detect"] = device.detect.model_copy(update={"weights": weights})
    return device.model_copy(update=update) if update else device


__all__ = [
    "Broker",
    "CameraDetect",
    "ConfigError",
    "Crs",
    "Device",
    "DeviceKind",
    "GeomagSettings",
    "GpsFilters",
    "HomographyPair",
    "Merchant",
    "MotionGate",
    "Route",
    "SiteConfig",
    "Zone",
    "ZoneKind",
    "load_config",
]
