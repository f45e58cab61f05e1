import io
import resource
import struct
from datetime import UTC, datetime

import pytest
from PIL import Image

from ingest.decoders import decode
from ingest.decoders.base import DecodeContext, DecodeError, Reason, snapshot_key
from ingest.readings import Snapshot, Stream, TimeFlag

RECEIVED = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
TOPIC = "streetwatch/site1/cam-north/snapshot"


def ctx(ts: str | None = "2024-05-01T20:00:00+08:00", max_pixels: int = 40_000_000):
    props = () if ts is None else (("camera", "north"), ("ts", ts))
    return DecodeContext(
        "cam-north",
        Stream.SNAPSHOT,
        "jpeg",
        "wgs84",
        TOPIC,
        RECEIVED,
        user_properties=props,
        max_image_pixels=max_pixels,
    )


def jpeg(width: int = 64, height: int = 48, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, fmt)
    return buffer.getvalue()


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """Patch the SOF0 segment (FFC0, length, precision, height, width) of a real JPEG."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def error_of(payload: bytes, context: DecodeContext | None = None) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(context or ctx(), payload)
    return info.value


def test_snapshot() -> None:
    payload = jpeg(64, 48)
    [reading] = decode(ctx(), payload)
    assert reading.payload == Snapshot(jpeg=payload, width=64, height=48)
    assert reading.payload.jpeg is payload
    assert reading.kind == "snapshot"
    assert reading.key == snapshot_key("cam-north", reading.device_ts, payload)
    assert reading.device_ts == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert reading.time_flag is TimeFlag.OK
    assert reading.payload_dict() == {"width": 64, "height": 48}


def test_same_bytes_with_a_later_ts_is_a_new_snapshot() -> None:
    """A camera re-sending an unchanged frame of a static scene: each capture counts."""
    payload = jpeg()
    [first] = decode(ctx(ts="2024-05-01T20:00:00+08:00"), payload)
    [later] = decode(ctx(ts="2024-05-01T20:00:05+08:00"), payload)
    [redelivered] = decode(ctx(ts="2024-05-01T20:00:00+08:00"), payload)
    assert first.key != later.key
    assert redelivered.key == first.key
    # the same instant written another way is the same capture
    [as_epoch] = decode(ctx(ts="1714564800"), payload)
    assert as_epoch.key == first.key
    # different content at the same instant, or another camera, is another snapshot
    [other] = decode(ctx(ts="2024-05-01T20:00:00+08:00"), jpeg(32, 24))
    assert other.key != first.key
    assert snapshot_key("cam-south", first.device_ts, payload) != first.key


def test_epoch_seconds_property() -> None:
    [reading] = decode(ctx(ts="1714564800"), jpeg())
    assert reading.device_ts == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_missing_time_is_flagged_not_rejected() -> None:
    [reading] = decode(ctx(ts=None), jpeg())
    assert reading.device_ts is None
    assert reading.time_flag is TimeFlag.MISSING
    assert reading.event_ts == RECEIVED


def test_future_capture_time_is_flagged() -> None:
    [reading] = decode(ctx(ts="2024-05-02T12:00:00Z"), jpeg())
    assert reading.time_flag is TimeFlag.FUTURE


@pytest.mark.parametrize("ts", ["2024-05-01T12:00:00", "yesterday", ""])
def test_bad_capture_time(ts: str) -> None:
    assert error_of(jpeg(), ctx(ts=ts)).reason is Reason.BAD_TIME


def test_trailing_padding_after_eoi_is_tolerated() -> None:
    [reading] = decode(ctx(), jpeg() + b"\x00" * 16)
    assert reading.payload.width == 64


def test_declared_60000_square_is_refused_without_decoding() -> None:
    bomb = with_declared_size(jpeg(16, 16), 60000, 60000)
    with Image.open(io.BytesIO(jpeg(16, 16))) as image:
        assert image.size == (16, 16)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = error_of(bomb)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert error.reason is Reason.IMAGE_TOO_LARGE
    assert grown_kib < 100_000


def test_over_our_limit_but_under_pillows() -> None:
    payload = with_declared_size(jpeg(16, 16), 8000, 8000)
    error = error_of(payload)
    assert error.reason is Reason.IMAGE_TOO_LARGE
    assert "8000x8000 = 64000000 pixels" in error.detail


def test_limit_comes_from_the_context() -> None:
    assert error_of(jpeg(64, 48), ctx(max_pixels=3000)).reason is Reason.IMAGE_TOO_LARGE
    assert decode(ctx(max_pixels=3072), jpeg(64, 48))


@pytest.mark.parametrize(
    "payload",
    [
        jpeg()[: len(jpeg()) // 2],
        jpeg()[:20],
        jpeg()[:-2],
        b"\xff\xd8\xff" + b"\x00" * 64 + b"\xff\xd9",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9",
        with_declared_size(jpeg(), 0, 48),
        jpeg(fmt="PNG"),
        jpeg(fmt="GIF"),
        b"not an image at all",
        b"\xff\xd8",
    ],
)
def test_bad_images(payload: bytes) -> None:
    assert error_of(payload).reason is Reason.BAD_IMAGE


def test_png_detail_names_the_signature() -> None:
    assert "89504e47" in error_of(jpeg(fmt="PNG")).detail


def test_empty() -> None:
    assert error_of(b"").reason is Reason.EMPTY
