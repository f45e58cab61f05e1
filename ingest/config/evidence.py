"""The `evidence` section: packages, face blur, the case store and the case feed."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ingest.config.broker import Reconnect
from ingest.config.common import _ENV_NAME, Strict, _check_publish_topic
from ingest.config.zones import ZoneKind


class EvidenceBlur(Strict):
    """Blur bystanders' faces in the annotated snapshot copies (raw copies stay sealed as shot)."""

    enabled: bool = False
    model: Path | None = None
    """OpenCV face detector: a YuNet .onnx (cv2.FaceDetectorYN) or a Haar cascade .xml. Unset:
    YuNet from the shared assets (models/face_detection_yunet.onnx), else Debian's Haar cascade
    (opencv-data) where this OpenCV still has CascadeClassifier."""
    min_score: float = Field(0.6, gt=0, le=1)


class EvidencePlates(Strict):
    """Read the plate of a vehicle case (a vehicle in a no-parking or fire-lane camera zone) once,
    at package time, on the frame where the camera saw the vehicle best: the case's party."""

    enabled: bool = True
    detector: Path | None = None
    """HyperLPR3 plate detector .onnx. Unset: the shared asset
    models/plate_detect_hyperlpr3_640.onnx when present, else no plate reading (logged once)."""
    min_confidence: float = Field(0.8, gt=0, le=1)
    """A reading below this (mean character probability) does not name the party. It separates
    little: on 1,000 real crops the 990 right readings are all >= 0.8 and so are 7 of the 8
    wrong but well-formed ones (one character confused: G/6, C/L, W/H)."""
    detect_score: float = Field(0.5, gt=0, lt=1)
    subjects: tuple[str, ...] = ("car", "van", "truck", "bus", "motorcycle")
    """Subjects that carry a plate (the camera's class names, as in rules/catalog)."""
    zone_kinds: tuple[ZoneKind, ...] = (ZoneKind.NO_PARKING, ZoneKind.FIRE_LANE)
    threads: int = Field(1, ge=1, le=16)


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
    plates: EvidencePlates = EvidencePlates()
    feed: EvidenceFeed = EvidenceFeed()
