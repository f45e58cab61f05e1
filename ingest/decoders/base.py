"""What every decoder shares: the context it decodes in and the one error it raises."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ingest.readings import Stream


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


class DecodeError(ValueError):
    """A payload that cannot become a reading. `reason` is the counter key, str() the detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


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

    def property(self, name: str) -> str | None:
        for key, value in self.user_properties:
            if key == name:
                return value
        return None


def reading_key(topic: str, payload: bytes, index: int) -> str:
    """Stable id of the index-th reading in a message: a redelivery produces the same key."""
    digest = hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=12).hexdigest()
    return f"{digest}:{index}"
