"""What every decoder shares: the context it decodes in and the one error it raises."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ingest.readings import Reading, Stream


class Reason(StrEnum):
    """Why a message went to the dead-letter table. Stable names: counters are keyed by them."""

    NOT_JSON = "not_json"
    BAD_ENCODING = "bad_encoding"
    WRONG_TYPE = "wrong_type"
    MISSING_FIELD = "missing_field"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIME = "bad_time"
    TRUNCATED_NMEA = "truncated_nmea"
    BAD_CHECKSUM = "bad_checksum"
    UNSUPPORTED_SENTENCE = "unsupported_sentence"
    BAD_IMAGE = "bad_image"
    IMAGE_TOO_LARGE = "image_too_large"
    EMPTY = "empty"
    OVERSIZED = "oversized"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_STREAM = "unknown_stream"
    UNKNOWN_FORMAT = "unknown_format"
    UNKNOWN_METRIC = "unknown_metric"


class DecodeError(ValueError):
    """A payload that cannot become a reading. `reason` is the counter key, str() the detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class ElementError(DecodeError):
    """One element of a JSON array that cannot become a reading; the rest of the array can.

    `index` is its position in the array, `element` its own JSON text (what is dead-lettered).
    """

    def __init__(self, reason: Reason, detail: str, index: int, element: bytes) -> None:
        super().__init__(reason, f"element {index}: {detail}")
        self.index = index
        self.element = element


class PartialDecode(DecodeError):
    """Some elements of an array decoded and some did not.

    `readings` are the good elements' readings, keyed as if the whole array had been good, to be
    journaled; `rejected` has one ElementError per bad element, each to be dead-lettered alone.
    A caller that only catches DecodeError treats the whole message as bad, as before.
    """

    def __init__(self, readings: list[Reading], rejected: list[ElementError], total: int) -> None:
        first = rejected[0]
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        super().__init__(
            first.reason,
            f"{len(rejected)} of {total} elements rejected, {len(readings)} kept; "
            f"{first.detail}{more}",
        )
        self.readings = readings
        self.rejected = rejected


@dataclass(slots=True)
class DecoderState:
    """What decoding remembers between messages, per device: one per consumer, used only by the
    thread that decodes (paho's network thread). Today: each NMEA device's last RMC, so that a
    GGA sent in a message of its own (GGA has no date) is dated from its device's clock."""

    last_rmc: dict[str, tuple[datetime, datetime]]
    """device id -> (the last RMC's device time, its receive time)."""

    def __init__(self) -> None:
        self.last_rmc = {}


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """Everything a decoder needs to know about the message besides its bytes."""

    device_id: str
    stream: Stream
    fmt: str
    crs: str
    topic: str
    received_ts: datetime
    user_properties: tuple[tuple[str, str], ...] = ()
    max_future_s: float = 300.0
    max_past_s: float = 7 * 24 * 3600.0
    max_image_pixels: int = 40_000_000
    state: DecoderState | None = field(default=None, compare=False, repr=False)
    """State kept between messages (see DecoderState); None decodes each message on its own."""
    metrics: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """A sensor's declared metrics: name -> spec with `unit`, `min`, `max` (devices.yaml)."""

    def property(self, name: str) -> str | None:
        for key, value in self.user_properties:
            if key == name:
                return value
        return None


def reading_key(topic: str, payload: bytes, index: int) -> str:
    """Stable id of the index-th reading in a message: a redelivery produces the same key."""
    digest = hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=12).hexdigest()
    return f"{digest}:{index}"


def fix_key(device_id: str, device_ts: datetime) -> str:
    """Key of a position fix that may arrive in parts (NMEA RMC and GGA in separate messages):
    the device and the fix time, so every part and every redelivery of it has the same key and
    the journal merges them into one reading."""
    utc = device_ts.astimezone(UTC).isoformat()
    digest = hashlib.blake2b(f"fix\0{device_id}\0{utc}".encode(), digest_size=12).hexdigest()
    return f"{digest}:fix"


def snapshot_key(device_id: str, device_ts: datetime | None, payload: bytes) -> str:
    """Key of a snapshot: device, capture time (the `ts` user property) and content. The same
    bytes re-sent with a later `ts` (an unchanged scene) are a new snapshot; a redelivery (same
    bytes, same `ts`) is not."""
    when = "" if device_ts is None else device_ts.astimezone(UTC).isoformat()
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"snapshot\0{device_id}\0{when}\0".encode())
    digest.update(payload)
    return f"{digest.hexdigest()}:snap"
