"""Device timestamps: parse what devices send, and flag the ones that cannot be right."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from ingest.readings import TimeFlag

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_MS_ABOVE = 1e11
"""Epoch values above this are milliseconds: 1e11 seconds is the year 5138."""

_MAX_TEXT = 64
_EPOCH_TEXT = re.compile(r"[+-]?\d{1,16}(?:\.\d{1,9})?")


class TimeParseError(ValueError):
    """A timestamp that cannot be read. str() names the value and what is wrong with it."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def from_epoch(value: int | float) -> datetime:
    """Epoch seconds, or epoch milliseconds when above 1e11, as an aware UTC datetime."""
    if isinstance(value, float) and not math.isfinite(value):
        raise TimeParseError(f"ts={_show(value)} is not a finite number")
    try:
        if value > EPOCH_MS_ABOVE:
            return EPOCH + timedelta(milliseconds=value)
        return EPOCH + timedelta(seconds=value)
    except OverflowError:
        raise TimeParseError(f"ts={_show(value)} is outside the representable dates") from None


def from_iso(text: str) -> datetime:
    """ISO 8601 text with a UTC offset ("Z" or "+08:00"); a naive time is refused, not guessed."""
    if len(text) > _MAX_TEXT:
        raise TimeParseError(f"ts={_show(text)} is too long for an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimeParseError(f"ts={_show(text)} is not an ISO 8601 time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise TimeParseError(f"ts={_show(text)} has no UTC offset")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise TimeParseError(f"ts={_show(text)} is outside the representable dates") from None


def parse_ts(value: object) -> datetime:
    """A `ts` JSON value: ISO 8601 text with offset, or an epoch number (a bool is neither)."""
    if isinstance(value, str):
        return from_iso(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return from_epoch(value)
    raise TimeParseError(
        f"ts={_show(value)} is {type(value).__name__}, expected ISO 8601 text or epoch seconds"
    )


def parse_ts_text(text: str) -> datetime:
    """A `ts` carried as text (an MQTT user property): ISO 8601 with offset, or epoch digits."""
    stripped = text.strip()
    if _EPOCH_TEXT.fullmatch(stripped):
        number = float(stripped) if "." in stripped else int(stripped)
        return from_epoch(number)
    return from_iso(stripped)


def time_flag(
    device_ts: datetime | None,
    received_ts: datetime,
    max_future_s: float,
    max_past_s: float,
) -> TimeFlag:
    """Whether the device clock is plausible against the box's clock at receipt."""
    if device_ts is None:
        return TimeFlag.MISSING
    skew = (device_ts - received_ts).total_seconds()
    if skew > max_future_s:
        return TimeFlag.FUTURE
    if skew < -max_past_s:
        return TimeFlag.PAST
    return TimeFlag.OK
