"""NMEA 0183 text from GPS/BeiDou receivers: RMC and GGA become fixes, other sentences are skipped.

pynmea2 parses each sentence, verifies its checksum and recognises its type (any talker: GP,
GN, BD, GB, GL, GA...). Field values are then read strictly here, because pynmea2's own field
accessors hand back the raw text when a value does not parse.

One bad sentence (bad checksum, cut short, malformed field) rejects the whole message, so a
corrupted line never produces a half-trusted fix. An RMC or GGA that reports no fix at all (status
V / quality 0 and empty position fields) has nothing to record and is skipped. RMC and GGA for the
same time of day are merged into one fix: RMC's date, position, speed and course with GGA's hdop
and satellite count.

Many trackers send one sentence per MQTT message. A fix is therefore keyed by device and fix time
(`fix_key`), not by message: the RMC and the GGA of one instant, in whichever order and however
often (re)delivered, get the same key, and the journal merges the parts into one reading. GGA has
no date: it is dated from its device's last RMC (in this message, or remembered in the consumer's
DecoderState for `RMC_DATES_GGA_FOR_S`), i.e. by the device's own clock, so a log from another
day is not flagged `future`; with no RMC yet, from the receive time (the nearest day, so a
23:59:59 GGA received at 00:00:01 UTC belongs to the day before).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pynmea2

from ingest.decoders.base import DecodeContext, DecodeError, Reason, fix_key
from ingest.decoders.fields import check_not_negative, check_range, wgs84_position
from ingest.readings import GpsFix, Reading, merge_fixes
from ingest.timeparse import time_flag

KNOTS_TO_KMH = 1.852

RMC_DATES_GGA_FOR_S = 3600.0
"""How long (receive time) a device's last RMC dates its later GGA sentences. The date is the
RMC's device time moved on by the receive time elapsed since, so a GGA just past midnight after
an RMC just before it gets the next day. Past this, a GGA is dated from the receive time."""

# RMC mode indicator (NMEA 2.3+) values that do not come from a real satellite solution:
# not valid, estimated (dead reckoning), manual input, simulator.
_RMC_INVALID_MODES = frozenset("NEMS")
# GGA quality: 0 no fix, 6 estimated, 7 manual input, 8 simulation.
_GGA_VALID_QUALITIES = frozenset(range(1, 6))

_RMC_FIELDS = 9  # time, status, lat, N/S, lon, E/W, speed, course, date
_GGA_FIELDS = 8  # time, lat, N/S, lon, E/W, quality, satellites, hdop

_CHECKSUM_END = re.compile(r"\*[0-9A-Fa-f]{2}")
_TIME = re.compile(r"(\d\d)(\d\d)(\d\d)(?:\.(\d{1,9}))?")
_DATE = re.compile(r"(\d\d)(\d\d)(\d\d)")
_COORD = re.compile(r"(\d{0,3})(\d\d(?:\.\d{1,12})?)")
_NUMBER = re.compile(r"[+-]?(?:\d{1,12}(?:\.\d{0,12})?|\.\d{1,12})")
_COUNT = re.compile(r"\d{1,3}")
_SHOW_MAX = 60


def _cut(text: str) -> str:
    return repr(text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "...")


@dataclass(slots=True)
class _Fix:
    time_of_day: time
    device_ts: datetime
    gps: GpsFix


def _text(payload: bytes) -> str:
    try:
        return payload.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            Reason.BAD_ENCODING,
            f"NMEA payload is not ASCII: byte 0x{payload[exc.start]:02x} at offset {exc.start}",
        ) from None


def _sentences(text: str) -> Iterator[str]:
    """Each `$...*hh` sentence; several may share a line when a receiver drops the line break."""
    for line in text.splitlines():
        head, *rest = line.split("$")
        if head.strip():
            raise DecodeError(
                Reason.TRUNCATED_NMEA, f"{_cut(head)} is not a sentence start: no leading '$'"
            )
        for body in rest:
            sentence = "$" + body.strip()
            if _CHECKSUM_END.fullmatch(sentence[-3:]) is None:
                raise DecodeError(
                    Reason.TRUNCATED_NMEA, f"{_cut(sentence)} has no *hh checksum: cut short"
                )
            yield sentence


def _parse(sentence: str) -> pynmea2.NMEASentence | None:
    """The sentence as a pynmea2 object, or None for a well-formed sentence of no interest."""
    try:
        return pynmea2.parse(sentence, check=True)
    except pynmea2.ChecksumError:
        body = sentence[1:-3]
        raise DecodeError(
            Reason.BAD_CHECKSUM,
            f"{_cut(sentence)} checksum is {sentence[-2:]}, "
            f"content sums to {pynmea2.NMEASentence.checksum(body):02X}",
        ) from None
    except pynmea2.SentenceTypeError:
        return None
    except pynmea2.ParseError:
        raise DecodeError(
            Reason.TRUNCATED_NMEA, f"{_cut(sentence)} is not an NMEA sentence"
        ) from None
    except (IndexError, KeyError, TypeError, ValueError):
        # pynmea2's proprietary ($P...) factories index fields blindly. The checksum has already
        # passed by then, so this is an intact sentence we do not use.
        return None


def _fields(sentence: pynmea2.TalkerSentence, needed: int) -> list[str]:
    data = sentence.data
    if len(data) < needed:
        raise DecodeError(
            Reason.TRUNCATED_NMEA,
            f"{_name(sentence)} has {len(data)} fields, needs at least {needed}",
        )
    return data


def _name(sentence: pynmea2.TalkerSentence) -> str:
    return f"{sentence.talker}{sentence.sentence_type}"


def _time_of_day(name: str, text: str) -> time:
    if not text:
        raise DecodeError(Reason.MISSING_FIELD, f"{name} time is missing")
    match = _TIME.fullmatch(text)
    if match is None:
        raise DecodeError(Reason.BAD_TIME, f"{name} time={text!r} is not hhmmss[.ss]")
    hour, minute, second, fraction = match.groups()
    micro = int((fraction or "").ljust(6, "0")[:6])
    try:
        return time(int(hour), int(minute), int(second), micro, tzinfo=UTC)
    except ValueError:
        raise DecodeError(Reason.BAD_TIME, f"{name} time={text!r} is not a time of day") from None


def _date(name: str, text: str) -> date:
    if not text:
        raise DecodeError(Reason.MISSING_FIELD, f"{name} date is missing")
    match = _DATE.fullmatch(text)
    if match is None:
        raise DecodeError(Reason.BAD_TIME, f"{name} date={text!r} is not ddmmyy")
    day, month, year = (int(part) for part in match.groups())
    try:
        return date(2000 + year if year < 80 else 1900 + year, month, day)
    except ValueError:
        raise DecodeError(Reason.BAD_TIME, f"{name} date={text!r} is not a date") from None


def _nearest_date(time_of_day: time, anchor: datetime) -> datetime:
    """GGA has no date: use the day that puts its time of day nearest `anchor`."""
    anchor = anchor.astimezone(UTC)
    today = datetime.combine(anchor.date(), time_of_day)
    candidates = (today - timedelta(days=1), today, today + timedelta(days=1))
    return min(candidates, key=lambda candidate: abs(candidate - anchor))


def _gga_time(
    ctx: DecodeContext, time_of_day: time, last_rmc: tuple[datetime, datetime] | None
) -> datetime:
    """A GGA's full time: dated from the device's last RMC (its device time moved on by the
    receive time elapsed since) when that RMC is recent, else from the receive time."""
    if last_rmc is not None:
        rmc_ts, rmc_received = last_rmc
        elapsed = ctx.received_ts - rmc_received
        if abs(elapsed.total_seconds()) <= RMC_DATES_GGA_FOR_S:
            return _nearest_date(time_of_day, rmc_ts + elapsed)
    return _nearest_date(time_of_day, ctx.received_ts)


def _coordinate(name: str, field: str, text: str, hemisphere: str, positive: str) -> float:
    negative = "S" if positive == "N" else "W"
    match = _COORD.fullmatch(text)
    if match is None:
        raise DecodeError(Reason.WRONG_TYPE, f"{name} {field}={text!r} is not (d)ddmm.mmmm")
    degrees, minutes = match.groups()
    if float(minutes) >= 60.0:
        raise DecodeError(Reason.OUT_OF_RANGE, f"{name} {field}={text!r} has minutes >= 60")
    if hemisphere not in (positive, negative):
        raise DecodeError(
            Reason.WRONG_TYPE,
            f"{name} {field} hemisphere={hemisphere!r} is not {positive} or {negative}",
        )
    value = int(degrees or 0) + float(minutes) / 60.0
    return -value if hemisphere == negative else value


def _position(
    ctx: DecodeContext, name: str, fields: list[str], valid: bool
) -> tuple[float, float] | None:
    """WGS-84 (lat, lon) from the four position fields; None when a no-fix sentence has none."""
    lat_text, lat_hemi, lon_text, lon_hemi = fields
    if not any(fields):
        if valid:
            raise DecodeError(Reason.MISSING_FIELD, f"{name} reports a fix but has no position")
        return None
    for label, value in zip(("lat", "N/S", "lon", "E/W"), fields, strict=True):
        if not value:
            raise DecodeError(Reason.MISSING_FIELD, f"{name} {label} is missing")
    lat = _coordinate(name, "lat", lat_text, lat_hemi, "N")
    lon = _coordinate(name, "lon", lon_text, lon_hemi, "E")
    return wgs84_position(ctx, lat, lon, f"{name} ")


def _number(name: str, field: str, text: str) -> float | None:
    if not text:
        return None
    if _NUMBER.fullmatch(text) is None:
        raise DecodeError(Reason.WRONG_TYPE, f"{name} {field}={text!r} is not a number")
    return float(text)


def _rmc(ctx: DecodeContext, sentence: pynmea2.TalkerSentence) -> _Fix | None:
    name = _name(sentence)
    fields = _fields(sentence, _RMC_FIELDS)
    status = fields[1]
    if status not in ("A", "V"):
        raise DecodeError(Reason.WRONG_TYPE, f"{name} status={status!r} is not A or V")
    mode = fields[11] if len(fields) > 11 else ""
    valid = status == "A" and mode not in _RMC_INVALID_MODES
    position = _position(ctx, name, fields[2:6], valid)
    if position is None:
        return None
    time_of_day = _time_of_day(name, fields[0])
    device_ts = datetime.combine(_date(name, fields[8]), time_of_day)
    knots = _number(name, "speed", fields[6])
    check_not_negative(f"{name} speed", knots)
    heading = _number(name, "course", fields[7])
    check_range(f"{name} course", heading, 0.0, 360.0)
    speed_kmh = None if knots is None else knots * KNOTS_TO_KMH
    lat, lon = position
    return _Fix(
        time_of_day, device_ts, GpsFix(lat, lon, speed_kmh, heading, None, None, valid, "nmea-rmc")
    )


def _gga(
    ctx: DecodeContext,
    sentence: pynmea2.TalkerSentence,
    last_rmc: tuple[datetime, datetime] | None,
) -> _Fix | None:
    name = _name(sentence)
    fields = _fields(sentence, _GGA_FIELDS)
    quality_text = fields[5]
    if _COUNT.fullmatch(quality_text) is None:
        raise DecodeError(Reason.WRONG_TYPE, f"{name} quality={quality_text!r} is not a digit")
    quality = int(quality_text)
    if quality > 8:
        raise DecodeError(Reason.OUT_OF_RANGE, f"{name} quality={quality} is outside [0, 8]")
    valid = quality in _GGA_VALID_QUALITIES
    position = _position(ctx, name, fields[1:5], valid)
    if position is None:
        return None
    time_of_day = _time_of_day(name, fields[0])
    sats_text = fields[6]
    if sats_text and _COUNT.fullmatch(sats_text) is None:
        raise DecodeError(Reason.WRONG_TYPE, f"{name} satellites={sats_text!r} is not a count")
    hdop = _number(name, "hdop", fields[7])
    check_not_negative(f"{name} hdop", hdop)
    lat, lon = position
    sats = int(sats_text) if sats_text else None
    return _Fix(
        time_of_day,
        _gga_time(ctx, time_of_day, last_rmc),
        GpsFix(lat, lon, None, None, hdop, sats, valid, "nmea-gga"),
    )


def _merge(fixes: list[_Fix], new: _Fix) -> None:
    """Fold a sentence into the fix of the same instant in this message, else append it. The
    date comes from the RMC (a GGA's is inferred)."""
    for fix in fixes:
        if fix.time_of_day == new.time_of_day:
            if new.gps.source == "nmea-rmc" and fix.gps.source != "nmea-rmc":
                fix.device_ts = new.device_ts
            fix.gps = merge_fixes(fix.gps, new.gps)
            return
    fixes.append(new)


def decode_nmea(ctx: DecodeContext, payload: bytes) -> list[Reading]:
    """NMEA 0183 sentences separated by CR/LF. May return [] when the receiver has no fix."""
    text = _text(payload)
    if not text.strip():
        raise DecodeError(Reason.EMPTY, "NMEA payload is only whitespace")
    fixes: list[_Fix] = []
    seen_position_sentence = False
    state = ctx.state
    last_rmc = None if state is None else state.last_rmc.get(ctx.device_id)
    rmc_seen = False
    for raw in _sentences(text):
        sentence = _parse(raw)
        if isinstance(sentence, pynmea2.RMC):
            fix = _rmc(ctx, sentence)
            if fix is not None:
                last_rmc, rmc_seen = (fix.device_ts, ctx.received_ts), True
        elif isinstance(sentence, pynmea2.GGA):
            fix = _gga(ctx, sentence, last_rmc)
        else:
            continue
        seen_position_sentence = True
        if fix is not None:
            _merge(fixes, fix)
    if not seen_position_sentence:
        raise DecodeError(Reason.UNSUPPORTED_SENTENCE, "no RMC or GGA sentence in the message")
    if state is not None and rmc_seen and last_rmc is not None:
        state.last_rmc[ctx.device_id] = last_rmc  # only once the whole message decoded
    return [
        Reading(
            key=fix_key(ctx.device_id, fix.device_ts),
            device_id=ctx.device_id,
            stream=ctx.stream,
            device_ts=fix.device_ts,
            received_ts=ctx.received_ts,
            time_flag=time_flag(fix.device_ts, ctx.received_ts, ctx.max_future_s, ctx.max_past_s),
            payload=fix.gps,
        )
        for fix in fixes
    ]
