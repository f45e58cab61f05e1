"""The journal's retention beside a real TimescaleDB sink (PostgreSQL): nothing leaves the
journal before the sink has shipped it, or before the analysis has read it, or while a case
still to package may need its sensor history; once shipped, old rows go and PostgreSQL holds
every one of them."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from ingest.journal import Journal
from streetwatch.journal_retention import DAY_S, JournalRetention
from streetwatch.sink import TimeseriesSink
from tests.sink.sinkdata import T0, gps, journal_with, site


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM gps_fixes").fetchone()[0]  # type: ignore[index]


def _top(journal: Journal) -> int:
    return journal.readings(limit=100)[-1][0]


def test_rows_leave_the_journal_only_once_shipped(pg_dsn: str, journal_path: Path) -> None:
    journal = journal_with(journal_path, [gps(i) for i in range(20)])
    sink = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    retention = JournalRetention(journal, keep_days=1, pending_since=list, sink=sink)
    now = time.time()
    assert not retention.prune(now, analysed=_top(journal))  # the sink has shipped nothing
    assert sink.drain() == 20
    # shipped rows count from the next pass: an asynchronous commit lost in a database crash
    # takes its cursor move with it, and the sink ships those rows again
    assert not retention.prune(now, analysed=_top(journal))
    assert retention.prune(now, analysed=5).readings == 5  # the analysis is at seq 5
    assert retention.prune(now, analysed=_top(journal)).readings == 15
    assert journal.count() == 0
    assert _count(pg_dsn) == 20
    sink.stop()
    journal.close()


def test_a_case_still_to_package_keeps_a_days_margin_before_it(journal_path: Path) -> None:
    journal = journal_with(journal_path, [gps(i) for i in range(20)])
    opened = T0.timestamp() + 10 + DAY_S  # the history before it is what its package reads
    retention = JournalRetention(journal, keep_days=1, pending_since=lambda: [opened])
    assert retention.prune(time.time(), analysed=_top(journal)).readings == 10
    assert journal.readings(limit=1)[0][1].key == gps(10).key
    journal.close()


def test_no_keep_time_keeps_everything(journal_path: Path) -> None:
    journal = journal_with(journal_path, [gps(i) for i in range(5)])
    retention = JournalRetention(journal, keep_days=None, pending_since=list)
    assert retention.bounds(time.time(), _top(journal)) is None
    assert retention.maybe_prune(_top(journal)) is None
    assert journal.count() == 5
    journal.close()
