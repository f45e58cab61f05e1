"""An operator's change in the console is an `audit` case event, and the sink ships it to
PostgreSQL beside the case events, with who, what and before/after."""

from __future__ import annotations

from pathlib import Path

import psycopg

from evidence.cases import CaseStore
from streetwatch.sink import TimeseriesSink
from tests.sink.sinkdata import gps, journal_with, site


def test_audit_events_are_shipped_with_the_case_events(
    pg_dsn: str, journal_path: Path, tmp_path: Path
) -> None:
    journal_with(journal_path, [gps(0)])
    store = CaseStore(tmp_path / "cases.sqlite")
    before = [{"id": "kerb", "kind": "no_parking", "polygon": [[0, 0], [9, 0], [9, 9]]}]
    store.audit("otto", "zones.save", "zones/cam-1", before, [])
    store.audit("ada", "case.review", "cases/C-1", None, {"state": "confirmed"}, case_id="C-1")
    store.close()
    sink = TimeseriesSink(site(), journal_path, tmp_path / "cases.sqlite", dsn=pg_dsn)
    assert sink.drain() >= 1
    sink.close()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT case_id, event, data->>'actor', data->>'action', data->'before', data->'after'"
            " FROM case_events ORDER BY ts"
        ).fetchall()
    assert rows == [
        ("zones/cam-1", "audit", "otto", "zones.save", before, []),
        ("C-1", "audit", "ada", "case.review", None, {"state": "confirmed"}),
    ]
