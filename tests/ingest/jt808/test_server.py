"""The JT/T 808 listener over real TCP: the simulator terminal (written from the standard) and
published example frames, both header editions; acks only after the journal commit."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ingest.jt808.framing import unwrap, wrap
from ingest.jt808.message import parse
from streetwatch.scenario_jt808 import Terminal, location
from tests.ingest.jt808.kit import (
    TRUCK_2013_PHONE,
    TRUCK_PHONE,
    frame,
    listening,
    minutes_ago,
    wait_until,
)


def test_register_authenticate_report_acked_once_journaled(tmp_path: Path) -> None:
    with listening(tmp_path) as (listener, journal):
        with Terminal("127.0.0.1", listener.port, TRUCK_PHONE) as truck:
            result, code = truck.register()
            assert result == 0 and len(code) == 16
            assert truck.authenticate("wrong") == 1
            assert truck.authenticate(code) == 0
            assert truck.heartbeat() == 0
            loc = location(
                31.19708,
                121.44000,
                minutes_ago(1),
                speed_kmh=52.3,
                heading=90,
                alarm=0b10,
                mileage_km=1234.5,
                sats=17,
                signal=24,
                io=0b1,
            )
            assert truck.report(loc) == 0
            # the ack came after the commit: the reading is there now, no waiting
            [(_, reading)] = journal.readings()
        fix = reading.payload
        assert reading.device_id == "muck-08" and reading.device_ts == minutes_ago(1)
        assert (round(fix.lat, 6), round(fix.lon, 6)) == (31.19708, 121.44)
        assert (fix.speed_kmh, fix.heading, fix.sats, fix.valid) == (52.3, 90.0, 17, True)
        attrs = fix.attributes
        assert attrs["alarm"] == ["overspeed"] and attrs["inputs"] == ["dump_raised"]
        assert {"acc", "positioned", "gps", "beidou"} <= set(attrs["status"])
        assert (attrs["mileage_km"], attrs["signal"]) == (1234.5, 24)
        assert journal.dead_letter_counts() == {"bad_auth_code": 1}


def test_resent_report_and_batch_stored_once(tmp_path: Path) -> None:
    with listening(tmp_path) as (listener, journal):
        with Terminal("127.0.0.1", listener.port, TRUCK_PHONE) as truck:
            truck.login()
            locs = [location(31.2 + i * 1e-4, 121.44, minutes_ago(10 - i)) for i in range(5)]
            assert truck.report(locs[0]) == 0
            assert truck.report(locs[0]) == 0  # not acked in time, says the terminal: again
            assert truck.batch(locs, kind=1) == 0  # blind-area supplement repeats locs[0]
            assert journal.count() == 5
            big = [location(31.3, 121.44 + i * 1e-4, minutes_ago(5 - i / 100)) for i in range(60)]
            assert truck.batch(big) == 0  # > 1023 bytes: sent in sub-packages
            assert journal.count() == 65
        assert listener.stats.get("duplicates") == 2
        assert listener.stats.get("subpackages") >= 3


def test_published_frames_both_editions(tmp_path: Path) -> None:
    with listening(tmp_path, require_auth=False) as (listener, journal):
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
            for name in ("0002_2013", "0200_2013", "0200_2019", "0704_2019"):
                sock.sendall(frame(name))
            wait_until(lambda: listener.stats.get("acks") == 3, what="three acks")
            replies = _replies(sock, 4)
        ids = sorted((m.header.msg_id, m.header.edition) for m in replies)
        assert ids == [(0x8001, "2013")] * 2 + [(0x8001, "2019")] * 2
        readings = {r.device_id: r for _, r in journal.readings()}
        assert journal.count() == 4  # one 2013 report, one 2019 report, two in the batch
        sanitation = readings["sanitation-3"]
        assert (round(sanitation.payload.lat, 6), round(sanitation.payload.lon, 6)) == (
            6.152695,
            106.720495,
        )
        assert sanitation.payload.attributes["signal"] == 27
        truck = [r for _, r in journal.readings() if r.device_id == "muck-08"]
        first = min(truck, key=lambda r: r.payload.attributes["altitude_m"])
        assert first.payload.attributes["altitude_m"] == 123
        assert first.payload.attributes["fuel_l"] == 10.0
        assert first.payload.attributes["mileage_km"] == 1.2
        assert first.payload.lat == pytest.approx(-31.234567)  # status bit 2: south


def test_reply_matches_the_standard_example(tmp_path: Path) -> None:
    """The published 0x8001 answering serial 111 of a 2019 0x0200 is what we would send."""
    from dataclasses import replace

    from ingest.jt808.message import general_response, registration_response

    header = parse(unwrap(frame("0200_2019")[1:-1])).header
    assert general_response(replace(header, serial=111), 0, 0) == frame("8001_2019")
    assert registration_response(replace(header, serial=111), 0, "ok..ok..ok", 0) == frame(
        "8100_2019"
    )


def test_refusals_leave_other_terminals_alone(tmp_path: Path) -> None:
    with listening(
        tmp_path, max_frame_bytes=256, frame_timeout_s=0.5, max_connections_per_ip=6
    ) as (listener, journal):
        good = Terminal("127.0.0.1", listener.port, TRUCK_2013_PHONE, version=None).connect()
        good.login()
        # an unknown terminal registers: refused (4) and disconnected
        with Terminal("127.0.0.1", listener.port, "13800000000") as stranger:
            assert stranger.register()[0] == 4
        # a bad check code: dead-lettered, not acknowledged
        with socket.create_connection(("127.0.0.1", listener.port)) as sock:
            sock.sendall(frame("0200_2013_bad_check"))
            wait_until(lambda: "bad_check_code" in journal.dead_letter_counts())
            # an oversized frame closes its connection
            sock.sendall(b"\x7e" + b"\x01" * 400)
            assert sock.recv(10) == b""
        # slowloris: a frame begun and never ended
        with socket.create_connection(("127.0.0.1", listener.port)) as sock:
            sock.sendall(b"\x7e\x02\x00")
            sock.settimeout(10)
            assert sock.recv(10) == b""
        # a flood from one address: past the cap, refused at accept
        flood = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(8)]
        wait_until(lambda: listener.stats.get("refused_connections") >= 3, what="refusals")
        for sock in flood:
            sock.close()
        assert good.report(location(31.2, 121.44, minutes_ago(1))) == 0
        good.close()
        counts = journal.dead_letter_counts()
        for reason in (
            "unknown_terminal",
            "bad_check_code",
            "oversized",
            "slowloris",
            "connection_flood",
        ):
            assert counts.get(reason, 0) >= 1, (reason, counts)
        assert listener.stats.get("closed.slowloris") == 1
        assert journal.count() == 1


def test_location_before_authentication_is_refused(tmp_path: Path) -> None:
    with listening(tmp_path) as (listener, journal):
        with Terminal("127.0.0.1", listener.port, TRUCK_PHONE) as truck:
            truck.send_raw(truck.frame(0x0200, b"\x00" * 28))
            with pytest.raises(ConnectionError):
                truck.receive(5)
        wait_until(lambda: journal.dead_letter_counts().get("not_authenticated") == 1)
        assert journal.count() == 0


def test_bad_item_in_a_batch_keeps_the_good_ones(tmp_path: Path) -> None:
    with listening(tmp_path) as (listener, journal):
        with Terminal("127.0.0.1", listener.port, TRUCK_PHONE) as truck:
            truck.login()
            good = location(31.2, 121.44, minutes_ago(1))
            bad = b"\x00" * 20  # shorter than a location
            assert truck.batch([good, bad, good]) == 0
            assert truck.batch([good, bad, good]) == 0  # resent: nothing new
        assert journal.count() == 1
        assert journal.dead_letter_counts() == {"truncated": 1}


def _replies(sock: socket.socket, n: int) -> list:
    from ingest.jt808.framing import FrameSplitter

    splitter = FrameSplitter(4096)
    out: list = []
    sock.settimeout(10)
    while len(out) < n:
        out += [parse(unwrap(piece)) for piece in splitter.feed(sock.recv(4096))]
    return out


def test_wrap_round_trip() -> None:
    message = bytes(range(0x70, 0x80)) * 3
    assert unwrap(wrap(message)[1:-1]) == message


def test_a_connection_that_never_authenticates_is_closed(tmp_path: Path) -> None:
    with listening(tmp_path, auth_timeout_s=0.3) as (listener, journal):
        with Terminal("127.0.0.1", listener.port, TRUCK_PHONE) as truck:
            assert truck.heartbeat() == 0  # talking, but not authenticating
            with pytest.raises(ConnectionError):
                truck.receive(10)
        wait_until(lambda: journal.dead_letter_counts().get("auth_timeout") == 1)
        assert listener.stats.get("closed.auth_timeout") == 1
