"""Outages: the database stopped and started under a live stream, the sink killed in the middle
of a backlog. Nothing is lost and nothing is stored twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from ingest.journal import Journal
from streetwatch.sink import TimeseriesSink, apply_migrations
from streetwatch.sink.localpg import LocalPostgres
from tests.conftest import REPO
from tests.sink.sinkdata import gps, journal_with, site


def _counts(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT key) FROM gps_fixes").fetchone()  # type: ignore[return-value]


def _wait(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_database_stopped_and_started_during_a_stream(
    pg_private: LocalPostgres, journal_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = pg_private.create_database("stream")
    journal = Journal(journal_path, synchronous="NORMAL")
    total = 6000
    written = threading.Event()

    def produce() -> None:  # about 1,000 readings/s for 6 s, like a busy site
        for start in range(0, total, 100):
            journal.write([gps(i, device=f"gps-{i % 2 + 1}") for i in range(start, start + 100)])
            time.sleep(0.1)
        written.set()

    sink = TimeseriesSink(site(batch_size=500, flush_interval_ms=20), journal_path, dsn=dsn)
    producer = threading.Thread(target=produce)
    sink.start()
    producer.start()
    try:
        _wait(lambda: sink.stats.get("rows_shipped") > 500)
        pg_private.stop("immediate")  # a crash, as far as the sink can tell
        _wait(lambda: sink.stats.get("outage") is True, 30.0)  # noticed, however busy the box
        shipped_before = sink.stats.get("rows_shipped")
        pg_private.start()
        producer.join()
        _wait(lambda: written.is_set() and sink.backlog() == 0)
    finally:
        sink.stop()
        producer.join()
    assert written.is_set()
    assert _counts(dsn) == (total, total)
    # commits are asynchronous: those the crash lost were shipped again (and counted again)
    assert sink.stats.get("rows_shipped") >= total
    assert sink.stats.get("db_errors") >= 1
    assert sink.stats.get("outage") is False
    assert shipped_before < total
    assert "database unreachable" in caplog.text
    assert "database back after" in caplog.text
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "SELECT seq FROM sink_cursors WHERE source = 'readings'"
        ).fetchone() == (total,)
    journal.close()


def test_clean_restart_in_the_middle_of_a_backlog(pg_dsn: str, journal_path: Path) -> None:
    total = 20_000
    journal_with(journal_path, [gps(i) for i in range(total)]).close()
    first = TimeseriesSink(site(batch_size=1000), journal_path, dsn=pg_dsn)
    for _ in range(7):
        first.drain_once()
    first.stop()
    assert _counts(pg_dsn) == (7000, 7000)
    second = TimeseriesSink(site(batch_size=1000), journal_path, dsn=pg_dsn)
    assert second.drain() == total - 7000
    assert second.stats.get("duplicates") == 0
    assert _counts(pg_dsn) == (total, total)
    second.close()


KILLABLE = """
import sys
from streetwatch.sink import TimeseriesSink
from tests.sink.sinkdata import site
sink = TimeseriesSink(site(batch_size=700), sys.argv[1], dsn=sys.argv[2])
print("ready", flush=True)
sink.drain()
"""


def test_killed_in_the_middle_of_a_backlog(pg_dsn: str, journal_path: Path) -> None:
    total = 60_000
    journal_with(journal_path, [gps(i) for i in range(total)]).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_migrations(conn)
    for _attempt in range(3):  # kill -9 at different points of the backlog
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLABLE, str(journal_path), pg_dsn],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        done = _counts(pg_dsn)[0]
        _wait(lambda done=done: _counts(pg_dsn)[0] >= done + 3000, timeout_s=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    shipped, distinct = _counts(pg_dsn)
    assert shipped == distinct < total
    with psycopg.connect(pg_dsn) as conn:
        cursor = conn.execute("SELECT seq FROM sink_cursors WHERE source = 'readings'").fetchone()
    assert cursor == (shipped,)  # the cursor moved exactly with the committed rows
    sink = TimeseriesSink(site(batch_size=5000), journal_path, dsn=pg_dsn)
    assert sink.drain() == total - shipped
    assert sink.stats.get("duplicates") == 0
    assert _counts(pg_dsn) == (total, total)
    sink.close()


def test_connection_lost_mid_backlog_keeps_distances_exact(pg_dsn: str, journal_path: Path) -> None:
    """A batch converted ahead (prefetch) and a batch whose commit failed are converted again
    after the reconnect from the state of the last commit: every step is computed once, the
    same as in an uninterrupted run."""
    from streetwatch.sink.records import ReadingConverter

    readings = [gps(i, device=f"gps-{i % 2 + 1}") for i in range(4000)]
    journal_with(journal_path, readings).close()
    expected = 0.0
    reference = ReadingConverter()
    for seq, r in enumerate(readings, 1):  # rows as the journal holds them
        data = json.dumps(r.payload_dict())
        ts = r.device_ts.timestamp()  # type: ignore[union-attr]
        row = (seq, r.key, r.device_id, r.kind, ts, ts, "ok", data, None)
        expected += reference.convert(row)[1][-1] or 0.0

    sink = TimeseriesSink(site(batch_size=300), journal_path, dsn=pg_dsn)
    killed = 0
    while sink.drain_once():
        if sink.sources[0].prefetch is not None and killed < 4:
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'streetwatch-sink-%'"
                )
            killed += 1
            with pytest.raises(psycopg.OperationalError):
                sink.drain_once()
    sink.close()
    assert killed == 4
    assert sink.stats.get("connects") == 5
    with psycopg.connect(pg_dsn) as conn:
        count, total = conn.execute(
            "SELECT count(*), sum(step_m::float8) FROM gps_fixes"
        ).fetchone()  # type: ignore[misc]
    assert count == 4000
    assert total == pytest.approx(expected, rel=1e-6)  # step_m is a float4
    assert expected > 4000 * 1.1 * 0.9  # about 2.2 m per fix per vehicle
