"""The whole file: `site`, `ingest`, `storage`, the cross-section checks, and load_config."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ingest.config.broker import Broker
from ingest.config.common import SafeId, Strict, topic_matches
from ingest.config.console import Console
from ingest.config.devices import VIDEO_PUSH, Device, DeviceKind
from ingest.config.evidence import Evidence
from ingest.config.geometry import _check_lonlat, _check_pixels
from ingest.config.jt808 import Jt808, Protocol, normalise_phone
from ingest.config.timeseries import Timeseries
from ingest.config.zones import Merchant
from ingest.readings import Stream
from ingest.yamlsource import ConfigError, format_loc, load_yaml, validate


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
    journal_keep_days: float | None = Field(30, gt=0)
    """Journal rows older than this go once analysed, shipped to TimescaleDB (when it is
    configured) and needed by no package still to build; null keeps everything."""

    def resolved(self, base: Path) -> Storage:
        root = self.root if self.root.is_absolute() else base / self.root
        return Storage(
            root=root,
            journal=_under(base, self.journal, root / "journal.sqlite"),
            evidence=_under(base, self.evidence, root / "evidence"),
            min_free_mb=self.min_free_mb,
            journal_keep_days=self.journal_keep_days,
        )


def _under(base: Path, value: Path | None, default: Path) -> Path:
    if value is None:
        return default
    return value if value.is_absolute() else base / value


class SiteConfig(Strict):
    site: Site
    broker: Broker = Broker()
    ingest: Ingest = Ingest()
    storage: Storage = Storage()
    timeseries: Timeseries | None = None
    evidence: Evidence = Evidence()
    console: Console = Console()
    merchants: list[Merchant] = []  # noqa: RUF012 - pydantic copies field defaults
    jt808: Jt808 | None = None
    """The JT/T 808 listener for vehicle terminals (devices with `protocol: jt808`)."""
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
        problems += self._jt808_problems()
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

    def _jt808_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        phones: dict[str, int] = {}
        for index, device in enumerate(self.devices):
            if device.protocol is not Protocol.JT808 or device.phone is None:
                continue
            if self.jt808 is None:
                problems.append(
                    (
                        ("devices", index, "protocol"),
                        f"device {device.id} uses protocol jt808 but there is no `jt808:` section"
                        " (host, port) to listen on",
                    )
                )
            phone = normalise_phone(device.phone)
            if phone in phones:
                problems.append(
                    (
                        ("devices", index, "phone"),
                        f"phone {device.phone!r} is also devices[{phones[phone]}]'s",
                    )
                )
            phones.setdefault(phone, index)
        return problems

    def jt808_devices(self) -> dict[str, Device]:
        """Devices reporting over JT/T 808, by normalised phone number."""
        return {
            normalise_phone(d.phone): d
            for d in self.devices
            if d.protocol is Protocol.JT808 and d.phone is not None
        }

    def device(self, device_id: str) -> Device | None:
        return self._by_id.get(device_id)

    @property
    def _by_id(self) -> dict[str, Device]:
        """Built once per devices list: a `model_copy(update={"devices": ...})` carries this
        cache along, so it is keyed by the list it was built from."""
        cached = self.__dict__.get("_device_index")
        if cached is None or cached[0] is not self.devices:
            cached = (self.devices, {d.id: d for d in self.devices})
            self.__dict__["_device_index"] = cached
        return cached[1]

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
    console = config.console.resolved(base, Path(storage.root))
    return config.model_copy(update={"storage": storage, "devices": devices, "console": console})


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
