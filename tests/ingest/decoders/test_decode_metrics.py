"""Environment and facility sensors: `{ts, <metric>: number, ...}` against the device's declared
metrics; unknown metrics and values outside the declared range are dead letters with a reason."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.config import Device
from ingest.decoders import decode
from ingest.decoders.base import DecodeContext, DecodeError, Reason, reading_key
from ingest.readings import Metric, Stream, TimeFlag

RECEIVED = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
TOPIC = "streetwatch/site1/bin-12/metrics"
BIN = Device.model_validate(
    {
        "id": "bin-12",
        "kind": "sensor",
        "facility": "bin",
        "metrics": {
            "fill_pct": {"unit": "%", "min": 0, "max": 100},
            "temp_c": {"unit": "°C"},
        },
    }
)
CTX = DecodeContext("bin-12", Stream.METRICS, "json", "wgs84", TOPIC, RECEIVED, metrics=BIN.metrics)


def encode(**fields: Any) -> bytes:
    return json.dumps({"ts": "2024-05-01T20:00:00+08:00", **fields}).encode()


def error_of(payload: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(CTX, payload)
    return info.value


def test_each_metric_is_a_reading_with_its_unit() -> None:
    payload = encode(fill_pct=93.5, temp_c=-4)
    fill, temp = decode(CTX, payload)
    assert fill.payload == Metric("fill_pct", 93.5, "%")
    assert temp.payload == Metric("temp_c", -4.0, "°C")
    assert fill.kind == "metric" and fill.stream is Stream.METRICS
    assert [fill.key, temp.key] == [reading_key(TOPIC, payload, i) for i in (0, 1)]
    assert fill.device_ts == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert fill.time_flag is TimeFlag.OK
    assert fill.payload_dict() == {"name": "fill_pct", "value": 93.5, "unit": "%"}


def test_a_redelivery_has_the_same_keys() -> None:
    payload = encode(fill_pct=40)
    assert [r.key for r in decode(CTX, payload)] == [r.key for r in decode(CTX, payload)]


@pytest.mark.parametrize(
    ("fields", "reason", "words"),
    [
        ({"fill_pct": 100.5}, Reason.OUT_OF_RANGE, "fill_pct=100.5 % is outside its declared"),
        ({"fill_pct": -1}, Reason.OUT_OF_RANGE, "[0, 100]"),
        ({"nh3_ppm": 3}, Reason.UNKNOWN_METRIC, "declares no metric 'nh3_ppm'"),
        ({"fill_pct": 50, "nh3_ppm": 3}, Reason.UNKNOWN_METRIC, "fill_pct, temp_c"),
        ({"fill_pct": "50"}, Reason.WRONG_TYPE, "fill_pct"),
        ({"fill_pct": None}, Reason.WRONG_TYPE, "fill_pct"),
        ({}, Reason.MISSING_FIELD, "no metric in the message"),
    ],
)
def test_bad_messages_name_what_is_wrong(
    fields: dict[str, Any], reason: Reason, words: str
) -> None:
    error = error_of(encode(**fields))
    assert error.reason is reason
    assert words in error.detail


def test_missing_time_and_non_finite_values() -> None:
    assert error_of(json.dumps({"fill_pct": 5}).encode()).reason is Reason.MISSING_FIELD
    assert error_of(b'{"ts": 1714564800, "fill_pct": NaN}').reason is Reason.NOT_FINITE
    assert error_of(b"[1, 2]").reason is Reason.WRONG_TYPE


def test_a_metric_without_a_range_takes_any_finite_value() -> None:
    [reading] = decode(CTX, encode(temp_c=1e6))
    assert reading.payload == Metric("temp_c", 1e6, "°C")
