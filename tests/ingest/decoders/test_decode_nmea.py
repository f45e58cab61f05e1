from datetime import UTC, datetime, timedelta
from functools import reduce

import pytest

from ingest.coords import distance_m, wgs84_to_gcj02
from ingest.decoders import decode
from ingest.decoders.base import DecodeContext, DecodeError, DecoderState, Reason, fix_key
from ingest.decoders.nmea import RMC_DATES_GGA_FOR_S
from ingest.readings import GpsFix, Reading, Stream, TimeFlag

TOPIC = "streetwatch/site1/bus-12/gps"

# The classic examples from the NMEA 0183 references, checksums as published.
CLASSIC_RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
CLASSIC_GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
CLASSIC_GSV = "$GPGSV,2,1,08,01,40,083,46,02,17,308,41,12,07,344,39,14,22,228,45*75"
CLASSIC_GSA = "$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39"
CLASSIC_TIME = datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC)
CLASSIC_LAT = 48 + 7.038 / 60
CLASSIC_LON = 11 + 31.0 / 60


def checksummed(body: str) -> str:
    return f"${body}*{reduce(lambda acc, ch: acc ^ ord(ch), body, 0):02X}"


# A multi-constellation receiver (GPS + BeiDou) in Hefei, NMEA 4.1, 15 May 2024 08:35:59 UTC.
MODERN_RMC = checksummed("GNRMC,083559.00,A,3150.78150,N,11711.93302,E,0.012,,150524,,,A,V")
MODERN_GGA = checksummed("GNGGA,083559.00,3150.78150,N,11711.93302,E,1,12,0.76,38.1,M,-3.2,M,,")
MODERN_GSA = checksummed("GNGSA,A,3,05,13,15,18,23,24,,,,,,,1.32,0.76,1.08,1")
MODERN_GPGSV = checksummed("GPGSV,3,1,11,05,45,120,38,13,30,050,35,15,60,300,41,18,20,210,29,1")
MODERN_BDGSV = checksummed("BDGSV,2,1,06,01,45,120,38,02,30,050,35,03,60,300,41,04,20,210,29,0")
MODERN_VTG = checksummed("GNVTG,,T,,M,0.012,N,0.022,K,A")
MODERN_TIME = datetime(2024, 5, 15, 8, 35, 59, tzinfo=UTC)
HEFEI = (31 + 50.78150 / 60, 117 + 11.93302 / 60)


def ctx(received: datetime = MODERN_TIME + timedelta(seconds=1), crs: str = "wgs84"):
    return DecodeContext("bus-12", Stream.GPS, "nmea", crs, TOPIC, received)


def message(*sentences: str, sep: str = "\r\n") -> bytes:
    return (sep.join(sentences) + sep).encode("ascii")


def run(*sentences: str, received: datetime = MODERN_TIME + timedelta(seconds=1)) -> list[Reading]:
    return decode(ctx(received), message(*sentences))


def error_of(payload: bytes, received: datetime = MODERN_TIME) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(ctx(received), payload)
    return info.value


def test_checksum_helper_matches_published_sentences() -> None:
    assert checksummed(CLASSIC_RMC[1:-3]) == CLASSIC_RMC
    assert checksummed(CLASSIC_GGA[1:-3]) == CLASSIC_GGA
    assert checksummed(CLASSIC_GSV[1:-3]) == CLASSIC_GSV
    assert checksummed(CLASSIC_GSA[1:-3]) == CLASSIC_GSA


def test_classic_rmc() -> None:
    payload = message(CLASSIC_RMC)
    [reading] = decode(ctx(CLASSIC_TIME + timedelta(seconds=2)), payload)
    fix = reading.payload
    assert isinstance(fix, GpsFix)
    assert fix.source == "nmea-rmc"
    assert fix.valid
    assert fix.lat == pytest.approx(CLASSIC_LAT)
    assert fix.lon == pytest.approx(CLASSIC_LON)
    assert fix.speed_kmh == pytest.approx(22.4 * 1.852)
    assert fix.heading == pytest.approx(84.4)
    assert fix.hdop is None and fix.sats is None
    assert reading.device_ts == CLASSIC_TIME
    assert reading.time_flag is TimeFlag.OK
    assert reading.key == fix_key("bus-12", CLASSIC_TIME)
    assert reading.device_id == "bus-12"


def test_classic_rmc_received_today_is_flagged_past() -> None:
    [reading] = run(CLASSIC_RMC)
    assert reading.time_flag is TimeFlag.PAST


def test_classic_gga_takes_its_date_from_receive_time() -> None:
    [reading] = run(CLASSIC_GGA, received=CLASSIC_TIME + timedelta(seconds=3))
    assert reading.payload == GpsFix(
        pytest.approx(CLASSIC_LAT), pytest.approx(CLASSIC_LON), None, None, 0.9, 8, True, "nmea-gga"
    )
    assert reading.device_ts == CLASSIC_TIME


def test_rmc_and_gga_of_the_same_instant_merge_into_one_fix() -> None:
    [reading] = run(CLASSIC_RMC, CLASSIC_GGA, received=CLASSIC_TIME + timedelta(seconds=1))
    fix = reading.payload
    assert fix.source == "nmea"
    assert (fix.hdop, fix.sats) == (0.9, 8)
    assert fix.speed_kmh == pytest.approx(22.4 * 1.852)
    assert reading.device_ts == CLASSIC_TIME


def test_gga_before_rmc_also_merges() -> None:
    [reading] = run(CLASSIC_GGA, CLASSIC_RMC, received=CLASSIC_TIME)
    assert reading.payload.source == "nmea"
    assert reading.payload.heading == pytest.approx(84.4)


def test_modern_receiver_burst_with_gsv_gsa_vtg() -> None:
    readings = run(MODERN_RMC, MODERN_VTG, MODERN_GGA, MODERN_GSA, MODERN_GPGSV, MODERN_BDGSV)
    [reading] = readings
    fix = reading.payload
    assert fix.source == "nmea"
    assert fix.valid
    assert distance_m((fix.lat, fix.lon), HEFEI) < 0.01
    assert fix.speed_kmh == pytest.approx(0.012 * 1.852)
    assert fix.heading is None
    assert (fix.hdop, fix.sats) == (0.76, 12)
    assert reading.device_ts == MODERN_TIME


def test_beidou_talker() -> None:
    rmc = checksummed("BDRMC,083559.00,A,3150.78150,N,11711.93302,E,0.012,,150524,,,A,V")
    gga = checksummed("BDGGA,083559.00,3150.78150,N,11711.93302,E,1,09,1.10,38.1,M,-3.2,M,,")
    [reading] = run(rmc, gga)
    assert reading.payload.source == "nmea"
    assert reading.payload.sats == 9


def test_two_instants_in_one_message_give_two_readings() -> None:
    rmc_2 = checksummed("GNRMC,083600.00,A,3150.78200,N,11711.93400,E,3.5,45.0,150524,,,A,V")
    gga_2 = checksummed("GNGGA,083600.00,3150.78200,N,11711.93400,E,1,11,0.80,38.0,M,-3.2,M,,")
    payload = message(MODERN_RMC, MODERN_GGA, rmc_2, gga_2)
    readings = decode(ctx(), payload)
    assert [r.key for r in readings] == [
        fix_key("bus-12", MODERN_TIME),
        fix_key("bus-12", MODERN_TIME + timedelta(seconds=1)),
    ]
    assert [r.device_ts for r in readings] == [MODERN_TIME, MODERN_TIME + timedelta(seconds=1)]
    assert readings[1].payload.sats == 11
    assert readings[1].payload.heading == 45.0


@pytest.mark.parametrize("sep", ["\n", "\r", "\r\n", ""])
def test_separators(sep: str) -> None:
    [reading] = decode(ctx(), message(MODERN_RMC, MODERN_GSA, MODERN_GGA, sep=sep))
    assert reading.payload.source == "nmea"


def test_lowercase_checksum_is_accepted() -> None:
    assert run(MODERN_RMC[:-2] + MODERN_RMC[-2:].lower())


@pytest.mark.parametrize(
    ("time_text", "received", "expected"),
    [
        ("235959.00", datetime(2024, 5, 2, 0, 0, 2, tzinfo=UTC), datetime(2024, 5, 1, 23, 59, 59)),
        ("000001.00", datetime(2024, 5, 1, 23, 59, 58, tzinfo=UTC), datetime(2024, 5, 2, 0, 0, 1)),
        (
            "120000.50",
            datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC),
            datetime(2024, 5, 1, 12, 0, 0, 500000),
        ),
    ],
)
def test_gga_date_follows_utc_midnight(
    time_text: str, received: datetime, expected: datetime
) -> None:
    gga = checksummed(f"GNGGA,{time_text},3150.78150,N,11711.93302,E,1,12,0.76,38.1,M,-3.2,M,,")
    [reading] = run(gga, received=received)
    assert reading.device_ts == expected.replace(tzinfo=UTC)
    assert reading.time_flag is TimeFlag.OK


def test_rmc_status_v_is_kept_as_invalid() -> None:
    rmc = checksummed("GPRMC,123519,V,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
    [reading] = run(rmc, received=CLASSIC_TIME)
    assert reading.payload.valid is False
    assert reading.payload.lat == pytest.approx(CLASSIC_LAT)


def test_rmc_mode_not_valid_is_invalid() -> None:
    rmc = checksummed("GNRMC,083559.00,A,3150.78150,N,11711.93302,E,0.0,,150524,,,N,V")
    [reading] = run(rmc)
    assert reading.payload.valid is False


@pytest.mark.parametrize("quality", ["0", "6", "7", "8"])
def test_gga_without_a_real_solution_is_invalid(quality: str) -> None:
    gga = checksummed(f"GNGGA,083559.00,3150.78150,N,11711.93302,E,{quality},04,9.9,38.1,M,,M,,")
    [reading] = run(gga)
    assert reading.payload.valid is False


def test_invalid_half_makes_the_merged_fix_invalid() -> None:
    gga = checksummed("GNGGA,083559.00,3150.78150,N,11711.93302,E,0,00,99.9,,M,,M,,")
    [reading] = run(MODERN_RMC, gga)
    assert reading.payload.source == "nmea"
    assert reading.payload.valid is False


def test_receiver_without_a_fix_yields_no_readings() -> None:
    rmc = checksummed("GPRMC,,V,,,,,,,,,,N")
    gga = checksummed("GPGGA,,,,,,0,00,99.99,,,,,,")
    assert run(rmc, gga, MODERN_GPGSV) == []


def test_gcj02_receiver_is_converted_to_wgs84() -> None:
    lat, lon = wgs84_to_gcj02(*HEFEI)
    lat_text = f"{int(lat)}{(lat - int(lat)) * 60:08.5f}"
    lon_text = f"{int(lon)}{(lon - int(lon)) * 60:08.5f}"
    rmc = checksummed(f"GNRMC,083559.00,A,{lat_text},N,{lon_text},E,0.0,,150524,,,A,V")
    [reading] = decode(ctx(crs="gcj02"), message(rmc))
    assert distance_m((reading.payload.lat, reading.payload.lon), HEFEI) < 0.5


def test_southern_and_western_hemispheres() -> None:
    rmc = checksummed("GPRMC,225446,A,3351.000,S,15112.000,W,000.5,054.7,191194,020.3,E")
    [reading] = run(rmc)
    assert reading.payload.lat == pytest.approx(-(33 + 51 / 60))
    assert reading.payload.lon == pytest.approx(-(151 + 12 / 60))


def test_bad_checksum() -> None:
    error = error_of(message(CLASSIC_RMC[:-2] + "6B"))
    assert error.reason is Reason.BAD_CHECKSUM
    assert "checksum is 6B, content sums to 6A" in error.detail


def test_bad_checksum_in_a_skipped_sentence_still_rejects_the_message() -> None:
    corrupt_gsv = CLASSIC_GSV.replace(",46,", ",47,")
    assert error_of(message(MODERN_RMC, corrupt_gsv)).reason is Reason.BAD_CHECKSUM


def test_flipped_field_fails_the_checksum() -> None:
    assert error_of(message(CLASSIC_RMC.replace("4807", "4808"))).reason is Reason.BAD_CHECKSUM


@pytest.mark.parametrize(
    "payload",
    [
        CLASSIC_RMC[:30],
        CLASSIC_RMC[:-3],
        CLASSIC_RMC[:-1],
        CLASSIC_RMC[:30] + CLASSIC_GGA,
        MODERN_RMC + "\r\n" + MODERN_GGA[:25],
        CLASSIC_RMC[20:],
        checksummed("GPRMC,123519,A,4807.038,N"),
        checksummed("GPGGA,123519,4807.038,N,01131.000,E,1"),
        "$GP*00",
        "$",
    ],
)
def test_truncated_sentences(payload: str) -> None:
    assert error_of(payload.encode()).reason is Reason.TRUNCATED_NMEA


@pytest.mark.parametrize(
    "sentences",
    [
        (CLASSIC_GSV,),
        (MODERN_GSA, MODERN_VTG, MODERN_BDGSV),
        (checksummed("GPXYZ,1,2,3"),),
        (checksummed("PUBX,00,081350.00,4717.113210,N,00833.915187,E,546.589,G3,2.1,2.0"),),
        (checksummed("PASH"),),
        (checksummed("GPGLL,4916.45,N,12311.12,W,225444,A"),),
    ],
)
def test_no_rmc_or_gga_is_unsupported(sentences: tuple[str, ...]) -> None:
    assert error_of(message(*sentences)).reason is Reason.UNSUPPORTED_SENTENCE


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", Reason.EMPTY),
        (b"\r\n\r\n", Reason.EMPTY),
        (
            "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W°*6A".encode(),
            Reason.BAD_ENCODING,
        ),
        (b"\xff\xfe$GPRMC", Reason.BAD_ENCODING),
    ],
)
def test_bad_payloads(payload: bytes, reason: Reason) -> None:
    assert error_of(payload).reason is reason


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (
            "GPRMC,123519,X,4807.038,N,01131.000,E,022.4,084.4,230394,,",
            Reason.WRONG_TYPE,
            "status='X'",
        ),
        (
            "GPRMC,123519,A,48x7.038,N,01131.000,E,022.4,084.4,230394,,",
            Reason.WRONG_TYPE,
            "lat='48x7.038'",
        ),
        (
            "GPRMC,123519,A,4807.038,Q,01131.000,E,022.4,084.4,230394,,",
            Reason.WRONG_TYPE,
            "hemisphere='Q'",
        ),
        (
            "GPRMC,123519,A,4807.038,N,01131.000,E,fast,084.4,230394,,",
            Reason.WRONG_TYPE,
            "speed='fast'",
        ),
        (
            "GPRMC,123519,A,9107.038,N,01131.000,E,022.4,084.4,230394,,",
            Reason.OUT_OF_RANGE,
            "GPRMC lat=91.1173 is outside [-90, 90]",
        ),
        (
            "GPRMC,123519,A,4861.038,N,01131.000,E,022.4,084.4,230394,,",
            Reason.OUT_OF_RANGE,
            "minutes >= 60",
        ),
        ("GPRMC,123519,A,4807.038,N,18131.000,E,022.4,084.4,230394,,", Reason.OUT_OF_RANGE, "lon="),
        (
            "GPRMC,123519,A,4807.038,N,01131.000,E,-22.4,084.4,230394,,",
            Reason.OUT_OF_RANGE,
            "speed=-22.4 is negative",
        ),
        (
            "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,400.0,230394,,",
            Reason.OUT_OF_RANGE,
            "course=400.0",
        ),
        (
            "GPRMC,253519,A,4807.038,N,01131.000,E,022.4,084.4,230394,,",
            Reason.BAD_TIME,
            "time='253519'",
        ),
        ("GPRMC,12:35:19,A,4807.038,N,01131.000,E,022.4,084.4,230394,,", Reason.BAD_TIME, "hhmmss"),
        (
            "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,,",
            Reason.BAD_TIME,
            "date='320394'",
        ),
        (
            "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,,,",
            Reason.MISSING_FIELD,
            "date is missing",
        ),
        (
            "GPRMC,,A,4807.038,N,01131.000,E,022.4,084.4,230394,,",
            Reason.MISSING_FIELD,
            "time is missing",
        ),
        (
            "GPRMC,123519,A,,,,,022.4,084.4,230394,,",
            Reason.MISSING_FIELD,
            "reports a fix but has no position",
        ),
        (
            "GPRMC,123519,A,4807.038,N,,E,022.4,084.4,230394,,",
            Reason.MISSING_FIELD,
            "lon is missing",
        ),
        (
            "GPGGA,123519,4807.038,N,01131.000,E,x,08,0.9,545.4,M,46.9,M,,",
            Reason.WRONG_TYPE,
            "quality='x'",
        ),
        (
            "GPGGA,123519,4807.038,N,01131.000,E,9,08,0.9,545.4,M,46.9,M,,",
            Reason.OUT_OF_RANGE,
            "quality=9",
        ),
        (
            "GPGGA,123519,4807.038,N,01131.000,E,1,eight,0.9,545.4,M,46.9,M,,",
            Reason.WRONG_TYPE,
            "satellites='eight'",
        ),
        (
            "GPGGA,123519,4807.038,N,01131.000,E,1,08,-0.9,545.4,M,46.9,M,,",
            Reason.OUT_OF_RANGE,
            "hdop=-0.9 is negative",
        ),
        (
            "GPGGA,123519,4807.038,N,01131.000,E,1,08,1e3,545.4,M,46.9,M,,",
            Reason.WRONG_TYPE,
            "hdop='1e3'",
        ),
    ],
)
def test_malformed_fields(body: str, reason: Reason, detail: str) -> None:
    error = error_of(message(checksummed(body)))
    assert error.reason is reason
    assert detail in error.detail


# ---- one sentence per MQTT message (what many trackers send) ------------------------------


def one(
    sentence: str, received: datetime, state: DecoderState | None, device: str = "bus-12"
) -> list[Reading]:
    context = DecodeContext(
        device,
        Stream.GPS,
        "nmea",
        "wgs84",
        f"streetwatch/site1/{device}/gps",
        received,
        state=state,
    )
    return decode(context, message(sentence))


@pytest.mark.parametrize("order", ["rmc-first", "gga-first"])
def test_rmc_and_gga_in_separate_messages_have_one_key(order: str) -> None:
    """Both parts of one fix get the key of the fix (device + fix time): the journal merges
    them into one reading (tests/ingest/test_journal.py), a redelivery of either is a duplicate."""
    state = DecoderState()
    first, second = (MODERN_RMC, MODERN_GGA) if order == "rmc-first" else (MODERN_GGA, MODERN_RMC)
    [a] = one(first, MODERN_TIME + timedelta(seconds=0.2), state)
    [b] = one(second, MODERN_TIME + timedelta(seconds=0.3), state)
    assert a.key == b.key == fix_key("bus-12", MODERN_TIME)
    assert a.device_ts == b.device_ts == MODERN_TIME
    sources = {a.payload.source, b.payload.source}
    assert sources == {"nmea-rmc", "nmea-gga"}
    [again] = one(first, MODERN_TIME + timedelta(seconds=5), state)
    assert again.key == a.key


def test_gga_after_an_rmc_of_another_day_is_dated_from_that_rmc() -> None:
    """A log from yesterday replayed now: the GGA gets yesterday's date, not a time 36 minutes
    ahead of the receive time (which was flagged `future`)."""
    state = DecoderState()
    received = datetime(2024, 5, 16, 8, 0, 0, tzinfo=UTC)  # the log is of 15 May, 08:35:59
    [rmc] = one(MODERN_RMC, received, state)
    assert rmc.device_ts == MODERN_TIME and rmc.time_flag is TimeFlag.OK
    gga = checksummed("GNGGA,083600.00,3150.78150,N,11711.93302,E,1,12,0.76,38.1,M,-3.2,M,,")
    [reading] = one(gga, received + timedelta(seconds=1), state)
    assert reading.device_ts == MODERN_TIME + timedelta(seconds=1)
    assert reading.time_flag is TimeFlag.OK
    # without the device's RMC it would be dated from the receive day, 36 minutes ahead
    [alone] = one(gga, received + timedelta(seconds=1), None)
    assert alone.time_flag is TimeFlag.FUTURE
    # another device's RMC dates nothing of this one's
    [other] = one(gga, received + timedelta(seconds=1), state, device="bus-13")
    assert other.time_flag is TimeFlag.FUTURE


def test_gga_after_midnight_follows_the_rmc_before_midnight() -> None:
    state = DecoderState()
    rmc = checksummed("GNRMC,235959.00,A,3150.78150,N,11711.93302,E,0.0,,140524,,,A,V")
    received = datetime(2024, 5, 20, 3, 0, tzinfo=UTC)  # a replayed log: receive day irrelevant
    one(rmc, received, state)
    gga = checksummed("GNGGA,000000.00,3150.78150,N,11711.93302,E,1,12,0.76,38.1,M,-3.2,M,,")
    [reading] = one(gga, received + timedelta(seconds=1), state)
    assert reading.device_ts == datetime(2024, 5, 15, 0, 0, tzinfo=UTC)


def test_gga_without_any_rmc_before_midnight_received_after_it() -> None:
    """No RMC yet: the receive date, but a 23:59:59 GGA received at 00:00:01 UTC belongs to
    the day before."""
    gga = checksummed("GNGGA,235959.00,3150.78150,N,11711.93302,E,1,12,0.76,38.1,M,-3.2,M,,")
    [reading] = one(gga, datetime(2024, 5, 16, 0, 0, 1, tzinfo=UTC), DecoderState())
    assert reading.device_ts == datetime(2024, 5, 15, 23, 59, 59, tzinfo=UTC)
    assert reading.time_flag is TimeFlag.OK


def test_an_old_rmc_no_longer_dates_a_gga() -> None:
    state = DecoderState()
    received = datetime(2024, 5, 16, 8, 0, 0, tzinfo=UTC)
    one(MODERN_RMC, received, state)
    gga = checksummed("GNGGA,083600.00,3150.78150,N,11711.93302,E,1,12,0.76,38.1,M,-3.2,M,,")
    later = received + timedelta(seconds=RMC_DATES_GGA_FOR_S + 1)
    [reading] = one(gga, later, state)
    assert reading.device_ts.date() == later.date()


def test_a_rejected_message_leaves_the_state_alone() -> None:
    state = DecoderState()
    received = datetime(2024, 5, 16, 8, 0, 0, tzinfo=UTC)
    with pytest.raises(DecodeError):
        one(MODERN_RMC + "\r\n" + CLASSIC_RMC[:-2] + "00", received, state)
    assert state.last_rmc == {}
    one(MODERN_RMC, received, state)
    assert state.last_rmc == {"bus-12": (MODERN_TIME, received)}
