"""JPEG snapshots over MQTT: checked and measured from the header, never decoded here.

The check walks the marker segments up to the first scan (SOS): a header cut short, zero-filled
or otherwise broken is refused here (`bad_image`) rather than journaled as a picture that no
decoder can open later. Damage inside the compressed scan data is not detectable without
decoding; libjpeg shows it as grey blocks.
"""

from __future__ import annotations

import io
from datetime import datetime

from PIL import Image

from ingest.decoders.base import DecodeContext, DecodeError, Reason, snapshot_key
from ingest.readings import Reading, Snapshot, TimeFlag
from ingest.timeparse import TimeParseError, parse_ts_text, time_flag

SOI = b"\xff\xd8\xff"
EOI = b"\xff\xd9"
SOS = 0xDA
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
"""TEM and RST0-7: markers without a length field."""
SOF = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)})
"""Frame headers (baseline, progressive, lossless, arithmetic); C4 DHT, C8 JPG, CC DAC are not."""


def _check_segments(payload: bytes) -> None:
    """Every segment before the first scan is a marker with a length that fits; a frame header
    (SOF) comes before the scan, and the scan has data before the closing EOI."""
    pos, end, frame = 2, len(payload), False
    while True:
        if pos >= end or payload[pos] != 0xFF:
            found = "the end" if pos >= end else f"0x{payload[pos]:02x}"
            raise DecodeError(
                Reason.BAD_IMAGE, f"JPEG header is corrupt: byte {pos} is {found}, not a marker"
            )
        while pos < end and payload[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= end:
            raise DecodeError(Reason.BAD_IMAGE, "JPEG header ends in fill bytes")
        marker = payload[pos]
        pos += 1
        if marker == 0xD9:
            raise DecodeError(Reason.BAD_IMAGE, "JPEG ends (EOI) before any scan: no image data")
        if marker in STANDALONE:
            continue
        if pos + 2 > end:
            raise DecodeError(Reason.BAD_IMAGE, f"JPEG segment FF{marker:02X} has no length")
        length = int.from_bytes(payload[pos : pos + 2], "big")
        if length < 2 or pos + length > end:
            raise DecodeError(
                Reason.BAD_IMAGE,
                f"JPEG segment FF{marker:02X} at byte {pos - 2} declares {length} bytes, "
                f"{end - pos} remain",
            )
        frame = frame or marker in SOF
        pos += length
        if marker == SOS:
            if not frame:
                raise DecodeError(Reason.BAD_IMAGE, "JPEG scan (SOS) without a frame header (SOF)")
            if payload.rstrip(b"\x00").rfind(EOI) <= pos:
                raise DecodeError(Reason.BAD_IMAGE, "JPEG scan has no data before its EOI")
            return


def _dimensions(ctx: DecodeContext, payload: bytes) -> tuple[int, int]:
    if not payload.startswith(SOI):
        raise DecodeError(
            Reason.BAD_IMAGE, f"payload starts with {payload[:4].hex()}, not a JPEG SOI marker"
        )
    if not payload.rstrip(b"\x00").endswith(EOI):
        raise DecodeError(Reason.BAD_IMAGE, "JPEG has no EOI marker at its end: truncated")
    _check_segments(payload)
    try:
        with Image.open(io.BytesIO(payload), formats=["JPEG"]) as image:
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(Reason.IMAGE_TOO_LARGE, f"JPEG header: {exc}") from None
    except Exception as exc:
        # Pillow raises many exception types on hostile headers; any of them means a bad image.
        raise DecodeError(Reason.BAD_IMAGE, f"JPEG header is unreadable: {exc!r}") from None
    if width <= 0 or height <= 0:
        raise DecodeError(Reason.BAD_IMAGE, f"JPEG header declares {width}x{height} pixels")
    if width * height > ctx.max_image_pixels:
        raise DecodeError(
            Reason.IMAGE_TOO_LARGE,
            f"JPEG is {width}x{height} = {width * height} pixels, "
            f"more than max_image_pixels={ctx.max_image_pixels}",
        )
    return width, height


def _capture_time(ctx: DecodeContext) -> tuple[datetime | None, TimeFlag]:
    raw = ctx.property("ts")
    if raw is None:
        return None, TimeFlag.MISSING
    try:
        device_ts = parse_ts_text(raw)
    except TimeParseError as exc:
        raise DecodeError(Reason.BAD_TIME, f"user property {exc}") from None
    return device_ts, time_flag(device_ts, ctx.received_ts, ctx.max_future_s, ctx.max_past_s)


def decode_snapshot_jpeg(ctx: DecodeContext, payload: bytes) -> list[Reading]:
    """Raw JPEG bytes; the capture time is the MQTT v5 user property `ts` (absent: MISSING).

    Keyed by device, capture time and content: a camera that re-sends an unchanged frame with a
    new `ts` (a static scene) gives a new reading each time; a redelivery gives the same key."""
    width, height = _dimensions(ctx, payload)
    device_ts, flag = _capture_time(ctx)
    return [
        Reading(
            key=snapshot_key(ctx.device_id, device_ts, payload),
            device_id=ctx.device_id,
            stream=ctx.stream,
            device_ts=device_ts,
            received_ts=ctx.received_ts,
            time_flag=flag,
            payload=Snapshot(jpeg=payload, width=width, height=height),
        )
    ]
