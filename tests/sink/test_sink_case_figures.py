"""The field's figures as views in the database (migration 0005): the sink ships a real case
store's events to the real PostgreSQL of the sink tests, and `case_disposal` and
`case_figures_daily` agree with `streetwatch cases stats`."""

from __future__ import annotations

from pathlib import Path

import psycopg

from evidence.cases import CaseStore
from evidence.stats import case_stats
from streetwatch.sink import TimeseriesSink
from tests.evidence.test_stats import LATER, _fill
from tests.sink.sinkdata import gps, journal_with, site


def test_case_views_agree_with_cases_stats(pg_dsn: str, journal_path: Path, tmp_path: Path) -> None:
    journal_with(journal_path, [gps(0)])
    store = CaseStore(tmp_path / "cases.sqlite")
    ids = _fill(store)
    store.audit("ada", "zones.save", "zones/cam-1", None, [])  # not a case: no row in the views
    figures = case_stats(store, now=LATER)
    store.close()
    sink = TimeseriesSink(site(), journal_path, tmp_path / "cases.sqlite", dsn=pg_dsn)
    assert sink.drain() >= 1
    sink.close()
    with psycopg.connect(pg_dsn) as conn:
        per_case = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT case_id, rule_id, disposal_s, escalations, repeat, rejected"
                " FROM case_disposal"
            )
        }
        days = conn.execute(
            "SELECT rule_id, to_char(day, 'YYYY-MM-DD'), opened, cleared_by_box, rectified,"
            " disposal_p50_s, disposal_p90_s, within_deadline, escalations, repeats, rejected"
            " FROM case_figures_daily ORDER BY 1, 2"
        ).fetchall()
    assert set(per_case) == set(ids.values())
    assert per_case[ids["A"]] == ("cross-door-trading", 240.0, 0, False, False)
    assert per_case[ids["B"]] == ("cross-door-trading", 1200.0, 1, False, False)
    assert per_case[ids["C"]][1:] == (None, 0, False, True)
    assert per_case[ids["E"]] == ("stray-bicycle", 600.0, 0, True, False)
    assert days == [
        ("cross-door-trading", "2026-11-23", 5, 1, 1, 240.0, 1200.0, 1, 2, 0, 1),
        ("stray-bicycle", "2026-11-23", 1, 1, 0, 600.0, 600.0, 1, 0, 1, 0),
    ]
    by_rule = {f["rule_id"]: f for f in figures["rules"]}
    for (
        rule_id,
        _,
        opened,
        box,
        rectified,
        p50,
        p90,
        within,
        escalations,
        repeats,
        rejected,
    ) in days:
        f = by_rule[rule_id]
        assert (opened, box, rectified, escalations, repeats, rejected) == (
            f["opened"],
            f["cleared_by_box"],
            f["rectified"],
            f["escalations"],
            f["repeats"],
            f["rejected"],
        )
        assert (p50, p90, within) == (
            f["disposal_p50_s"],
            f["disposal_p90_s"],
            f["within_deadline"],
        )
