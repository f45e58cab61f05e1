"""The field's figures from a real case store: disposal by the box and by the case system,
p50/p90, the share within the deadline, escalations, repeats, rejections, days in the site's
calendar; offences per merchant; and `streetwatch cases stats|merchants` printing them."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from evidence.cases import CaseStore, State
from evidence.settings import evidence_paths
from evidence.stats import case_stats, merchant_offences, percentile
from streetwatch.evidence_cli import cases
from tests.evidence.evidence_support import make_violation, site_config, utc

START = utc(2026, 11, 23, 8, 0)
LATER = START + timedelta(days=2)


def _walk(store: CaseStore, case_id: str, *states: State, at: datetime | None = None) -> None:
    for state in states:
        store.transition(case_id, state, at)


def _fill(store: CaseStore) -> dict[str, str]:
    """A cleared by the box in 4 min; B escalated, then rectified at 20 min; C rejected by the
    box's review; D open past its deadline (escalated); E another rule, cleared in 10 min, a
    repeat of A; F opened at 04:00 local time the next day, open past its deadline."""
    ids = {}
    for name, n in (("A", 0), ("B", 1), ("C", 2), ("D", 3)):
        violation = make_violation(START, n)
        ids[name] = store.open(violation, violation.opened_at)[0].case_id
    other = dataclasses.replace(make_violation(START, 4), rule_id="stray-bicycle", party=None)
    ids["E"] = store.open(other, other.opened_at)[0].case_id
    f = make_violation(START + timedelta(hours=12), 5)
    ids["F"] = store.open(f, f.opened_at)[0].case_id
    opened = {k: store.get(v).opened_at for k, v in ids.items()}
    for name in ("A", "B", "D"):
        _walk(store, ids[name], State.EVIDENCE_COMPLETE, State.SUBMITTED, State.ACKNOWLEDGED)
    _walk(store, ids["C"], State.EVIDENCE_COMPLETE, State.REJECTED)
    store.clear(ids["A"], opened["A"] + timedelta(minutes=4))
    store.clear(ids["E"], opened["E"] + timedelta(minutes=10))
    store.mark_repeat(ids["E"], ids["A"])
    escalated = store.escalate_overdue(START + timedelta(minutes=17))
    assert sorted(c.case_id for c in escalated) == sorted([ids["B"], ids["D"]])
    store.transition(ids["B"], State.RECTIFIED, opened["B"] + timedelta(minutes=20))
    return ids


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    config = site_config(tmp_path)
    store = CaseStore(evidence_paths(config).cases)
    _fill(store)
    return store


def test_figures_per_rule_and_total(store: CaseStore) -> None:
    figures = case_stats(store, now=LATER, utc_offset_s=8 * 3600)
    total = figures["total"]
    assert total["opened"] == 6
    assert total["per_day"] == {"2026-11-23": 5, "2026-11-24": 1}
    assert total["per_month"] == {"2026-11": 6}
    assert (total["cleared_by_box"], total["rectified"], total["disposed"]) == (2, 1, 3)
    assert (total["disposal_p50_s"], total["disposal_p90_s"]) == (600.0, 1200.0)
    # A and E in time; B late; D and F past their deadline; C rejected does not count
    assert (total["within_deadline"], total["with_deadline"]) == (2, 5)
    assert total["within_deadline_share"] == 0.4
    assert (total["escalations"], total["escalated_cases"]) == (2, 2)
    assert (total["repeats"], total["rejected"]) == (1, 1)
    by_rule = {f["rule_id"]: f for f in figures["rules"]}
    assert set(by_rule) == {"cross-door-trading", "stray-bicycle"}
    assert by_rule["stray-bicycle"]["opened"] == 1
    assert by_rule["stray-bicycle"]["within_deadline_share"] == 1.0
    assert by_rule["cross-door-trading"]["disposal_p50_s"] == 240.0
    # UTC calendar: F (20:00 UTC) is still the 23rd
    assert case_stats(store, now=LATER)["total"]["per_day"] == {"2026-11-23": 6}


def test_since_and_an_empty_store(store: CaseStore, tmp_path: Path) -> None:
    later = case_stats(store, START + timedelta(hours=1), now=LATER)
    assert later["total"]["opened"] == 1 and [r["rule_id"] for r in later["rules"]] == [
        "cross-door-trading"
    ]
    empty = case_stats(CaseStore(tmp_path / "empty.sqlite"), now=LATER)
    assert empty["rules"] == [] and empty["total"]["opened"] == 0
    assert empty["total"]["disposal_p50_s"] is None
    assert empty["total"]["within_deadline_share"] is None


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([float(x) for x in range(1, 11)], 90) == 9.0
    assert percentile([float(x) for x in range(1, 11)], 50) == 5.0


def test_merchant_offences(store: CaseStore) -> None:
    rows = merchant_offences(store)
    assert len(rows) == 1
    row = rows[0]
    assert row["merchant_id"] == "m-0001"
    assert (row["cases"], row["offences"], row["rejected"]) == (5, 4, 1)
    assert (row["escalated"], row["repeats"]) == (2, 0)
    assert row["by_rule"] == {"cross-door-trading": 5}
    assert merchant_offences(store, START + timedelta(hours=1))[0]["cases"] == 1
    assert merchant_offences(store, LATER) == []


def test_cli_stats_and_merchants(store: CaseStore, tmp_path: Path) -> None:
    config = str(tmp_path / "devices.yaml")
    runner = CliRunner()
    result = runner.invoke(cases, ["stats", "-c", config, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["total"]["opened"] == 6 and figures["total"]["rejected"] == 1
    assert figures["total"]["per_day"] == {"2026-11-23": 5, "2026-11-24": 1}  # Asia/Shanghai

    result = runner.invoke(cases, ["stats", "-c", config])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert total.split()[1] == "6" and "40%" in total and "10.0 min" in total
    assert "per month: 2026-11: 6" in result.output

    result = runner.invoke(cases, ["stats", "-c", config, "--since", "2030-01-01", "--json"])
    assert json.loads(result.output)["total"]["opened"] == 0
    result = runner.invoke(cases, ["stats", "-c", config, "--since", "yesterday-ish"])
    assert result.exit_code == 2 and "ISO date" in result.output

    result = runner.invoke(cases, ["merchants", "-c", config, "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["merchant_id"] == "m-0001" and row["name"] == "Wang's Fruit"
    assert row["offences"] == 4
    result = runner.invoke(cases, ["merchants", "-c", config, "--since", "1d"])
    assert result.exit_code == 0 and "0 merchant(s)" in result.output
    result = runner.invoke(cases, ["merchants", "-c", config])
    assert "m-0001" in result.output and "offences    4" in result.output
