"""The SQLite journal: keyed readings stored once, dead letters bounded, a cursor that resumes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.decoders.base import fix_key, reading_key
from ingest.journal import DeadLetter, Journal
from ingest.readings import GeomagState, GpsFix, Reading, Snapshot, Stream, TimeFlag

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def gps(index: int) -> Reading:
    return Reading(
        key=reading_key("streetwatch/s/gps-1/gps", f"payload-{index}".encode(), 0),
        device_id="gps-1",
        stream=Stream.GPS,
        device_ts=NOW + timedelta(seconds=index),
        received_ts=NOW + timedelta(seconds=index, milliseconds=40),
        time_flag=TimeFlag.OK,
        payload=GpsFix(lat=31.2 + index * 1e-5, lon=121.4, speed_kmh=18.5, hdop=0.8, sats=12),
    )


def test_journal_is_wal_and_round_trips_every_payload(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    snap = Reading(
        "k-snap:0",
        "cam-1",
        Stream.SNAPSHOT,
        None,
        NOW,
        TimeFlag.MISSING,
        Snapshot(jpeg=b"\xff\xd8fake\xff\xd9", width=4, height=3),
    )
    state = Reading(
        "k-state:0", "mag-1", Stream.GEOMAG, NOW, NOW, TimeFlag.FUTURE, GeomagState(occupied=True)
    )
    journal.write([gps(1), snap, state])
    stored = [r for _, r in journal.readings()]
    assert stored == [gps(1), snap, state]
    with sqlite3.connect(tmp_path / "j.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_redelivered_readings_are_stored_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    first = journal.write([gps(i) for i in range(10)])
    again = journal.write([gps(i) for i in range(5, 15)])
    assert (first.inserted, first.duplicates) == (10, 0)
    assert (again.inserted, again.duplicates) == (5, 5)
    assert journal.count() == 15


def test_cursor_resumes_after_reopen(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.write([gps(i) for i in range(25)])
    seen = journal.readings(after_seq=0, limit=10)
    cursor = seen[-1][0]
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite")
    rest = list(reopened.iter_readings(after_seq=cursor, batch=7))
    assert [r.device_ts for _, r in rest] == [gps(i).device_ts for i in range(10, 25)]


def test_dead_letters_keep_a_bounded_payload_and_the_reason(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    raw = b"x" * 100_000
    letter = DeadLetter.of("t/a", raw, "oversized", "100000 bytes", NOW, limit=4096)
    journal.write([], [letter, DeadLetter.of("t/b", b"{", "not_json", "cut", NOW, limit=4096)])
    assert journal.dead_letter_counts() == {"oversized": 1, "not_json": 1}
    stored = {d.reason: d for d in journal.dead_letters()}
    assert len(stored["oversized"].payload) == 4096
    assert stored["oversized"].payload_size == 100_000
    assert stored["not_json"].payload == b"{"


def test_a_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    unstorable = DeadLetter(NOW, "t/a", "not_json", "x", payload=object(), payload_size=1)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.Error):
        journal.write([gps(1)], [unstorable])
    assert journal.count() == 0
    journal.write([gps(1)])
    assert journal.count() == 1


def test_cursors_start_at_zero_and_survive_reopening(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    assert journal.cursor("analysis") == 0
    journal.set_cursor("analysis", 41)
    journal.set_cursor("analysis", 42)
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite")
    assert reopened.cursor("analysis") == 42
    assert reopened.cursor("other") == 0


# ---- NMEA fixes in parts, keyed dead letters ----------------------------------------------


def nmea_part(source: str, *, received_s: float = 0.0) -> Reading:
    """One part of the fix of NOW: the RMC's (speed, course) or the GGA's (hdop, satellites)."""
    rmc = source == "nmea-rmc"
    return Reading(
        key=fix_key("bus-12", NOW),
        device_id="bus-12",
        stream=Stream.GPS,
        device_ts=NOW,
        received_ts=NOW + timedelta(seconds=received_s),
        time_flag=TimeFlag.OK,
        payload=GpsFix(
            31.2,
            121.4,
            speed_kmh=20.0 if rmc else None,
            heading=90.0 if rmc else None,
            hdop=None if rmc else 0.8,
            sats=None if rmc else 12,
            source=source,
        ),
    )


WHOLE = GpsFix(31.2, 121.4, 20.0, 90.0, 0.8, 12, True, "nmea")


@pytest.mark.parametrize("order", [("nmea-rmc", "nmea-gga"), ("nmea-gga", "nmea-rmc")])
def test_the_parts_of_one_nmea_fix_merge_into_one_reading(tmp_path: Path, order) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.write([gps(0)])
    first = journal.write([nmea_part(order[0])])
    [(seq_first, _)] = journal.readings(after_seq=1)
    second = journal.write([nmea_part(order[1], received_s=0.5)])
    assert (first.inserted, second.inserted, second.merged, second.duplicates) == (1, 0, 1, 0)
    assert journal.count() == 2
    [(seq, reading)] = journal.readings(after_seq=1)
    assert reading.payload == WHOLE
    assert reading.received_ts == NOW  # the first part's
    # moved past every cursor that may have read the first part alone
    assert seq > seq_first
    # a redelivery of either part changes nothing
    for part in order:
        again = journal.write([nmea_part(part, received_s=3)])
        assert (again.inserted, again.merged, again.duplicates) == (0, 0, 1)
    assert journal.readings(after_seq=1) == [(seq, reading)]


def test_both_parts_in_one_batch_are_one_reading_where_the_last_part_came(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    result = journal.write([gps(0), nmea_part("nmea-rmc"), gps(1), nmea_part("nmea-gga"), gps(2)])
    assert (result.inserted, result.merged, result.duplicates) == (4, 1, 0)
    stored = [r for _, r in journal.readings()]
    assert [r.device_id for r in stored] == ["gps-1", "gps-1", "bus-12", "gps-1"]
    assert stored[2].payload == WHOLE


def test_a_json_fix_with_an_existing_key_is_never_merged(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.write([gps(1)])
    result = journal.write([gps(1)])
    assert (result.inserted, result.merged, result.duplicates) == (0, 0, 1)


def test_a_keyed_dead_letter_is_stored_and_counted_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    element = DeadLetter.of(
        "t/a",
        b'{"lon":1}',
        "missing_field",
        "element 3: lat is missing",
        NOW,
        limit=4096,
        key="abc:3",
    )
    whole = DeadLetter.of("t/a", b"{", "not_json", "cut", NOW, limit=4096)
    first = journal.write([gps(1)], [element, whole])
    again = journal.write([gps(1)], [element, whole])
    assert first.dead_reasons == {"missing_field": 1, "not_json": 1}
    assert (again.dead_letters, again.dead_reasons) == (1, {"not_json": 1})
    # a bad message received twice is two letters (nothing says it was one message)
    assert journal.dead_letter_counts() == {"missing_field": 1, "not_json": 2}
    assert {d.key for d in journal.dead_letters()} == {"abc:3", None}


def test_a_journal_of_the_previous_version_gets_the_dead_letter_key(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, received_ts REAL"
            " NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,"
            " payload BLOB NOT NULL, payload_size INTEGER NOT NULL);"
            "INSERT INTO dead_letters (received_ts, topic, reason, detail, payload, payload_size)"
            " VALUES (1, 't', 'not_json', 'x', x'7b', 1);"
        )
    journal = Journal(path)
    letter = DeadLetter.of("t", b"[1]", "wrong_type", "element 0", NOW, limit=10, key="k:0")
    journal.write([], [letter, letter])
    assert journal.dead_letter_counts() == {"not_json": 1, "wrong_type": 1}
    journal.close()
    assert Journal(path).dead_letter_counts() == {"not_json": 1, "wrong_type": 1}
