"""Every record type lands in PostgreSQL once, with its values; bad records are rejected with
a reason and a counter while the rest flows."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from ingest.journal import Journal
from ingest.readings import GpsFix, Reading, Stream, TimeFlag
from streetwatch.sink import TimeseriesSink
from tests.sink.sinkdata import (
    T0,
    case_store,
    every_kind,
    gps,
    journal_with,
    observation,
    raw_reading,
    site,
)


def nmea_part(fix: GpsFix) -> Reading:
    """One half of an NMEA fix, keyed by device and fix time as the decoder keys it."""
    return Reading(
        key="gps-1:nmea:2026-11-20T08:00:00Z",
        device_id="gps-1",
        stream=Stream.GPS,
        device_ts=T0,
        received_ts=T0 + timedelta(milliseconds=300),
        time_flag=TimeFlag.OK,
        payload=fix,
    )


def _one(dsn: str, query: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()  # type: ignore[return-value]


def test_every_record_type(pg_dsn: str, journal_path: Path, tmp_path: Path) -> None:
    journal = journal_with(journal_path, every_kind())
    journal.write_observations([observation(0, 5.0), observation(0, 6.0), observation(100)])
    cases = case_store(
        tmp_path / "cases.sqlite",
        [
            ("C-1", "opened", T0.timestamp(), {"violation": {"zone_id": "fire-lane-1",
                                                             "category": "fire_lane",
                                                             "rule_id": "fire-lane-parking"}}),
            ("C-1", "delivered", T0.timestamp() + 60, {"attempt": 1}),
        ],
    )  # fmt: skip
    sink = TimeseriesSink(site(), journal_path, cases, dsn=pg_dsn)
    assert sink.drain() == 7 + 3 + 2
    stats = sink.stats.snapshot()
    assert stats["rows_shipped"] == 12
    assert stats.get("rejected", 0) == 0
    assert stats["mode"] == "plain"

    with psycopg.connect(pg_dsn) as conn:
        fix = conn.execute(
            "SELECT ts, key, device_id, received_ts - ts, lat, lon, speed_kmh, sats, valid,"
            " source, step_m FROM gps_fixes ORDER BY ts"
        ).fetchall()
        assert [f[1] for f in fix] == ["g00000000:0", "g00000010:0"]
        assert fix[0][0] == T0 and fix[0][3] == timedelta(milliseconds=120)
        assert fix[0][4:10] == (31.2, 121.4, 36.0, 9, True, "json")
        assert fix[0][10] is None
        assert fix[1][10] == pytest.approx(11.12, abs=0.05)  # 1e-4 degree of latitude

        assert conn.execute("SELECT bay, x, y, z FROM geomag_fields").fetchone() == (
            "B-01", 12.5, -3.0, 40.25,
        )  # fmt: skip
        assert conn.execute("SELECT bay, occupied FROM geomag_states ORDER BY ts").fetchall() == [
            ("B-01", True),
            ("B-01", False),
        ]
        ts, device_ts, flag, alt, pitch = conn.execute(
            "SELECT ts, device_ts, time_flag, alt_m, gimbal_pitch FROM drone_telemetry"
        ).fetchone()
        assert (ts, flag, alt, pitch) == (T0, "future", 80.0, -45.0)  # receive time used
        assert device_ts == T0 + timedelta(days=3)
        assert conn.execute("SELECT width, height, jpeg_bytes FROM snapshots").fetchone() == (
            640, 480, 306,
        )  # fmt: skip

        obs = conn.execute(
            "SELECT ts - first_seen, kind, zone_id, state, lon, lat, data->'attributes'"
            " FROM observations ORDER BY ts"
        ).fetchall()
        assert [o[0] for o in obs] == [timedelta(seconds=5), timedelta(seconds=6),
                                       timedelta(seconds=5)]  # fmt: skip
        assert obs[0][1:] == ("occupancy", "fire-lane-1", "occupied", 121.4, 31.2,
                              {"deviation_ut": 42.5})  # fmt: skip

        events = conn.execute(
            "SELECT case_id, event, origin, zone_id, category, rule_id FROM case_events ORDER BY ts"
        ).fetchall()
        assert events == [
            ("C-1", "opened", "sink-test", "fire-lane-1", "fire_lane", "fire-lane-parking"),
            ("C-1", "delivered", "sink-test", None, None, None),
        ]

        # the aggregates (plain views here) see the rows
        assert conn.execute("SELECT violations FROM violations_daily").fetchone() == (1,)
        km, fixes = conn.execute("SELECT distance_km, fixes FROM vehicle_distance_daily").fetchone()
        assert (round(km * 1000, 1), fixes) == (11.1, 2)
        assert conn.execute(
            "SELECT bay, samples, occupied_samples, occupied_ratio FROM occupancy_hourly"
        ).fetchone() == ("B-01", 2, 1, 0.5)

        cursors = dict(
            conn.execute("SELECT source, seq FROM sink_cursors WHERE origin = 'sink-test'")
        )
        assert cursors == {"readings": 7, "observations": 3, "case_events": 2}
    sink.close()


def test_replayed_batches_do_not_duplicate(pg_dsn: str, journal_path: Path) -> None:
    journal_with(journal_path, [gps(i) for i in range(500)])
    sink = TimeseriesSink(site(batch_size=200), journal_path, dsn=pg_dsn)
    assert sink.drain() == 500
    sink.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE sink_cursors SET seq = 0, last_key = NULL")  # forget everything
    again = TimeseriesSink(site(batch_size=200), journal_path, dsn=pg_dsn)
    assert again.drain() == 500
    assert again.stats.get("rows_shipped") == 0
    assert again.stats.get("duplicates") == 500
    # the first replayed batch hit the unique key on the direct COPY; the rest went careful
    assert again.stats.get("replayed_batches") == 1
    assert _one(pg_dsn, "SELECT count(*), count(DISTINCT key) FROM gps_fixes") == (500, 500)
    again.close()


def test_new_rows_after_catching_up(pg_dsn: str, journal_path: Path) -> None:
    journal = journal_with(journal_path, [gps(i) for i in range(10)])
    sink = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    assert sink.drain() == 10
    assert sink.drain_once() == 0
    journal.write([gps(i) for i in range(10, 25)])
    journal.write([gps(i) for i in range(5)])  # redelivered: the journal keeps them once
    assert sink.drain_once() == 15
    assert _one(pg_dsn, "SELECT count(*) FROM gps_fixes") == (25,)
    sink.close()


def test_bad_records_are_rejected_with_a_reason(
    pg_dsn: str, journal_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = journal_with(journal_path, [gps(0)])
    t = T0.timestamp()
    raw_reading(journal_path, "inf-time", "gps", '{"lat": 1, "lon": 2}', math.inf)
    raw_reading(journal_path, "no-lat", "gps", '{"lon": 2}', t)
    raw_reading(journal_path, "nan-lat", "gps", '{"lat": NaN, "lon": 2}', t)
    raw_reading(journal_path, "big-lat", "gps", '{"lat": 91.5, "lon": 2}', t)
    raw_reading(journal_path, "text-lon", "gps", '{"lat": 1, "lon": "east"}', t)
    raw_reading(journal_path, "garbage", "gps", "{not json", t)
    raw_reading(journal_path, "odd-kind", "radar", "{}", t)
    raw_reading(journal_path, "inf-field", "geomag_field", '{"x": 1e999, "y": 0, "z": 0}', t)
    journal.write([gps(1)])
    journal.write_observations([observation(0)])
    # PostgreSQL's jsonb refuses \u0000: the sink finds the row by bisecting and moves on
    nul = observation(1, 2.0)
    nul = type(nul)(**{**{f: getattr(nul, f) for f in nul.__slots__}, "attributes": {"x": "\0"}})
    journal.write_observations([nul, observation(2)])
    cases = case_store(
        tmp_path / "cases.sqlite",
        [("C-1", "opened", math.inf, {}), ("C-2", "opened", t, "[1, 2"), ("C-3", "opened", t, {})],
    )

    sink = TimeseriesSink(site(), journal_path, cases, dsn=pg_dsn)
    sink.drain()
    stats = sink.stats.snapshot()
    assert stats["rows_shipped"] == 2 + 2 + 1
    assert stats["rejected"] == 8 + 1 + 2
    assert {k: v for k, v in stats.items() if k.startswith("rejected.")} == {
        "rejected.not_finite": 4,
        "rejected.missing_field": 1,
        "rejected.out_of_range": 1,
        "rejected.wrong_type": 1,
        "rejected.bad_json": 2,
        "rejected.unknown_kind": 1,
        "rejected.database_refused": 1,
    }
    with psycopg.connect(pg_dsn) as conn:
        rejects = dict(
            conn.execute(
                "SELECT source || ':' || seq, reason || ': ' || detail FROM sink_rejects"
            ).fetchall()
        )
        assert rejects["readings:2"] == "not_finite: received_ts is inf"
        assert rejects["readings:3"] == "missing_field: lat is missing"
        assert rejects["readings:8"] == "unknown_kind: reading kind 'radar' has no table"
        assert rejects["observations:2"].startswith("database_refused: unsupported Unicode")
        assert rejects["case_events:1"] == "not_finite: at is inf"
        assert conn.execute("SELECT count(*) FROM gps_fixes").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM observations").fetchone() == (2,)
        assert conn.execute("SELECT case_id FROM case_events").fetchall() == [("C-3",)]
    assert "readings seq 6 rejected: wrong_type: lon is not a number ('east')" in caplog.text
    sink.close()


def test_case_store_that_does_not_exist_yet(
    pg_dsn: str, journal_path: Path, tmp_path: Path
) -> None:
    journal_with(journal_path, [gps(0)])
    path = tmp_path / "cases.sqlite"
    sink = TimeseriesSink(site(), journal_path, path, dsn=pg_dsn)
    assert sink.drain() == 1
    case_store(path, [("C-9", "opened", T0.timestamp(), {})])
    assert sink.drain() == 1
    assert _one(pg_dsn, "SELECT case_id FROM case_events") == ("C-9",)
    sink.close()


def test_replaced_journal_is_shipped_from_the_start(pg_dsn: str, tmp_path: Path) -> None:
    first = tmp_path / "a.sqlite"
    journal_with(first, [gps(i) for i in range(30)])
    sink = TimeseriesSink(site(), first, dsn=pg_dsn)
    sink.drain()
    sink.close()
    replaced = tmp_path / "b.sqlite"
    journal_with(replaced, [gps(i, prefix="new") for i in range(40)])
    sink = TimeseriesSink(site(), replaced, dsn=pg_dsn)
    assert sink.drain() == 40
    assert sink.stats.get("cursor_resets") == 1
    assert _one(pg_dsn, "SELECT count(*) FROM gps_fixes") == (70,)
    sink.close()


def test_journal_growth_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, synchronous="OFF")
    for start in range(0, 12_000, 2000):
        journal.write([gps(i) for i in range(start, start + 2000)])
    # nothing listens on port 1: the database is "down" for the whole test
    sink = TimeseriesSink(
        site(journal_warn_bytes=1024 * 1024), path, dsn="host=127.0.0.1 port=1 connect_timeout=2"
    )
    sink.start()
    try:
        for _ in range(100):
            if sink.stats.get("journal_warnings"):
                break
            sink._stop.wait(0.05)
    finally:
        sink.stop()
    assert sink.stats.get("journal_warnings") == 1
    assert sink.stats.get("db_errors") >= 1
    assert "database unreachable" in caplog.text
    assert "past journal_warn_bytes (1.0 MiB); 12000 records wait to be shipped" in caplog.text


def test_case_events_take_zone_and_category_from_the_case(
    pg_dsn: str, journal_path: Path, tmp_path: Path
) -> None:
    """The evidence case store's own schema: an `opened` event names the rule; the zone and
    category come from the case row, so violations per zone per day can be counted."""
    import json
    import sqlite3

    from evidence.cases import SCHEMA

    path = tmp_path / "cases.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    t = T0.timestamp()
    db.execute(
        "INSERT INTO cases (case_id, violation_id, state, rule_id, category, site_id, opened_at,"
        " updated_at, violation) VALUES ('C-7', 'v7', 'opened', 'fire-lane-parking', 'fire_lane',"
        " 'sink-test', ?, ?, ?)",
        (t, t, json.dumps({"zone_id": "fire-lane-1", "rule_id": "fire-lane-parking"})),
    )
    db.executemany(
        "INSERT INTO case_events (case_id, event, at, data) VALUES (?, ?, ?, ?)",
        [
            (
                "C-7",
                "opened",
                t,
                json.dumps({"violation_id": "v7", "rule_id": "fire-lane-parking"}),
            ),
            ("C-7", "evidence_complete", t + 5, "{}"),
            ("C-8", "opened", t + 9, "{}"),  # no case row (yet): shipped without a zone
        ],
    )
    db.commit()
    db.close()
    journal_with(journal_path, [])
    sink = TimeseriesSink(site(), journal_path, path, dsn=pg_dsn)
    assert sink.drain() == 3
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT case_id, event, rule_id, category, zone_id FROM case_events ORDER BY ts"
        ).fetchall()
        assert rows == [
            ("C-7", "opened", "fire-lane-parking", "fire_lane", "fire-lane-1"),
            ("C-7", "evidence_complete", "fire-lane-parking", "fire_lane", "fire-lane-1"),
            ("C-8", "opened", None, None, None),
        ]
        assert conn.execute(
            "SELECT zone_id, category, violations FROM violations_daily ORDER BY zone_id"
        ).fetchall() == [("fire-lane-1", "fire_lane", 1), (None, None, 1)]
    sink.close()


def test_journal_keeps_each_observation_update_once(journal_path: Path) -> None:
    journal = Journal(journal_path)
    updates = [observation(0, 5.0), observation(0, 6.0), observation(7)]
    assert journal.write_observations(updates) == 3
    assert journal.write_observations([*updates, observation(0, 6.5)]) == 1  # a redelivery
    journal.close()
    import sqlite3

    db = sqlite3.connect(journal_path)
    rows = db.execute("SELECT seq, key, last_seen, kind, device_id FROM observations").fetchall()
    seqs = [r[0] for r in rows]
    assert len(rows) == 4 and seqs == sorted(seqs)  # ignored duplicates may leave seq gaps
    assert rows[0][1] == observation(0).key and rows[0][3:] == ("occupancy", "mag-1")
    assert rows[1][2] == (T0 + timedelta(seconds=6)).timestamp()


def test_nmea_fix_completed_after_its_first_half_was_shipped(
    pg_dsn: str, journal_path: Path
) -> None:
    """An RMC shipped alone, then its GGA merged into it by the journal (a new seq, same key and
    ts): the stored row gains the GGA's hdop and satellites instead of keeping the half."""
    journal = Journal(journal_path)
    rmc = nmea_part(
        GpsFix(31.2, 121.4, speed_kmh=20.0, heading=90.0, hdop=None, sats=None, source="nmea-rmc")
    )
    journal.write([rmc])
    sink = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    assert sink.drain() == 1
    query = "SELECT count(*), max(speed_kmh), max(hdop), max(sats), max(source) FROM gps_fixes"
    assert _one(pg_dsn, query) == (1, 20.0, None, None, "nmea-rmc")
    gga = nmea_part(
        GpsFix(31.2, 121.4, speed_kmh=None, heading=None, hdop=0.8, sats=11, source="nmea-gga")
    )
    assert journal.write([gga]).merged == 1
    assert sink.drain_once() == 1
    assert _one(pg_dsn, query) == (1, 20.0, pytest.approx(0.8), 11, "nmea")
    journal.write([gga, rmc])  # redelivered halves change nothing anywhere
    assert sink.drain_once() == 0
    assert _one(pg_dsn, query) == (1, 20.0, pytest.approx(0.8), 11, "nmea")
    sink.close()
    journal.close()
