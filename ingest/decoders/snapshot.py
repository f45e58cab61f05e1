"""JPEG snapshots over MQTT: checked and measured from the header, never decoded here."""

from __future__ import annotations

import io
from datetime import datetime

from PIL import Image

from ingest.decoders.base import DecodeContext, DecodeError, Reason
from ingest.decoders.fields import make_reading
from ingest.readings import Reading, Snapshot, TimeFlag
from ingest.timeparse import TimeParseError, parse_ts_text, time_flag

SOI = b"\xff\xd8\xff"
EOI = b"\xff\xd9"


def _dimensions(ctx: DecodeContext, payload: bytes) -> tuple[int, int]:
    if not payload.startswith(SOI):
        raise DecodeError(
            Reason.BAD_IMAGE, f"payload starts with {payload[:4].hex()}, not a JPEG SOI marker"
        )
    if not payload.rstrip(b"\x00").endswith(EOI):
        raise DecodeError(Reason.BAD_IMAGE, "JPEG has no EOI marker at its end: truncated")
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
    """Raw JPEG bytes; the capture time is the MQTT v5 user property `ts` (absent: MISSING)."""
    width, height = _dimensions(ctx, payload)
    device_ts, flag = _capture_time(ctx)
    snapshot = Snapshot(jpeg=payload, width=width, height=height)
    return [make_reading(ctx, payload, 0, device_ts, flag, snapshot)]
