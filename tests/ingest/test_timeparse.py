from datetime import UTC, datetime, timedelta

import pytest

from ingest.readings import TimeFlag
from ingest.timeparse import TimeParseError, parse_ts, parse_ts_text, time_flag

NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EPOCH_NOON = 1714564800


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00+00:00",
        "2024-05-01T20:00:00+08:00",
        "2024-05-01T07:00:00-05:00",
        "2024-05-01 20:00:00.000+08:00",
    ],
)
def test_iso_with_offset_is_converted_to_utc(text: str) -> None:
    parsed = parse_ts(text)
    assert parsed == NOON
    assert parsed.utcoffset() == timedelta(0)


def test_iso_keeps_fraction() -> None:
    assert parse_ts("2024-05-01T12:00:00.250+00:00") == NOON + timedelta(milliseconds=250)


@pytest.mark.parametrize("text", ["2024-05-01T12:00:00", "2024-05-01"])
def test_naive_iso_is_rejected(text: str) -> None:
    with pytest.raises(TimeParseError, match="has no UTC offset"):
        parse_ts(text)


def test_epoch_seconds() -> None:
    assert parse_ts(EPOCH_NOON) == NOON
    assert parse_ts(EPOCH_NOON + 0.5) == NOON + timedelta(milliseconds=500)


def test_epoch_milliseconds_above_1e11() -> None:
    assert parse_ts(EPOCH_NOON * 1000) == NOON
    assert parse_ts(EPOCH_NOON * 1000 + 123) == NOON + timedelta(milliseconds=123)
    assert parse_ts(EPOCH_NOON * 1000.0) == NOON


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "bool"),
        (None, "NoneType"),
        ([EPOCH_NOON], "list"),
        ("yesterday", "not an ISO 8601 time"),
        ("1714564800", "not an ISO 8601 time"),
        ("2024-13-01T00:00:00Z", "not an ISO 8601 time"),
        ("2024-05-01T12:00:00Z" * 10, "too long"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (1e300, "outside the representable dates"),
        (10**400, "outside the representable dates"),
        ("0001-01-01T00:00:00+01:00", "outside the representable dates"),
    ],
)
def test_bad_values_are_refused_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(TimeParseError, match=message):
        parse_ts(value)


@pytest.mark.parametrize(
    "text",
    ["2024-05-01T20:00:00+08:00", str(EPOCH_NOON), f"{EPOCH_NOON}.0", str(EPOCH_NOON * 1000)],
)
def test_text_form_accepts_iso_and_epoch_digits(text: str) -> None:
    assert parse_ts_text(text) == NOON


def test_text_form_still_rejects_naive_iso() -> None:
    with pytest.raises(TimeParseError, match="has no UTC offset"):
        parse_ts_text("2024-05-01T12:00:00")


@pytest.mark.parametrize(
    ("skew_s", "flag"),
    [
        (0, TimeFlag.OK),
        (299, TimeFlag.OK),
        (301, TimeFlag.FUTURE),
        (-3600, TimeFlag.OK),
        (-7 * 86400 - 1, TimeFlag.PAST),
    ],
)
def test_time_flag(skew_s: float, flag: TimeFlag) -> None:
    device_ts = NOON + timedelta(seconds=skew_s)
    assert time_flag(device_ts, NOON, max_future_s=300, max_past_s=7 * 86400) is flag


def test_time_flag_missing() -> None:
    assert time_flag(None, NOON, 300, 3600) is TimeFlag.MISSING
