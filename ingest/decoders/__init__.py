"""Payload decoders: one message's bytes in, validated readings out, or one DecodeError.

`decode` never raises anything but DecodeError, whatever the bytes: the consumer sends the
message to the dead-letter store with `error.reason` and keeps running.
"""

from __future__ import annotations

from collections.abc import Callable

from ingest.decoders.base import DecodeContext, DecodeError, Reason
from ingest.decoders.geomag import decode_geomag_json
from ingest.decoders.gps import decode_gps_json
from ingest.decoders.metrics import decode_metrics_json
from ingest.decoders.nmea import decode_nmea
from ingest.decoders.snapshot import decode_snapshot_jpeg
from ingest.decoders.telemetry import decode_telemetry_json
from ingest.readings import Reading, Stream

Decoder = Callable[[DecodeContext, bytes], list[Reading]]

DECODERS: dict[tuple[Stream, str], Decoder] = {
    (Stream.GPS, "json"): decode_gps_json,
    (Stream.GPS, "nmea"): decode_nmea,
    (Stream.GEOMAG, "json"): decode_geomag_json,
    (Stream.TELEMETRY, "json"): decode_telemetry_json,
    (Stream.SNAPSHOT, "jpeg"): decode_snapshot_jpeg,
    (Stream.METRICS, "json"): decode_metrics_json,
}
"""The supported (stream, format) pairs; config validation can check devices against it."""


def decode(ctx: DecodeContext, payload: bytes) -> list[Reading]:
    """Decode one MQTT message for the device, stream and format that `ctx` names."""
    decoder = DECODERS.get((ctx.stream, ctx.fmt))
    if decoder is None:
        raise DecodeError(
            Reason.UNKNOWN_FORMAT,
            f"device {ctx.device_id}: no decoder for stream={ctx.stream!s} format={ctx.fmt!r}",
        )
    if not payload:
        raise DecodeError(Reason.EMPTY, "payload is empty")
    return decoder(ctx, bytes(payload))


__all__ = ["DECODERS", "DecodeContext", "DecodeError", "Reason", "decode"]
