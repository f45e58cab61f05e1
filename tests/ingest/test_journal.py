"""The SQLite journal: keyed readings stored once, dead letters bounded, a cursor that resumes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.decoders.base import reading_key
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
