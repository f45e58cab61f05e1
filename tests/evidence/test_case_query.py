"""The case list's queries against a real SQLite case store: every filter and page agrees with
a plain reading of the violations, the device side table keeps up, and the plans use indexes."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from evidence.case_query import ZONE, CaseFilter, CaseQuery, parse_when
from evidence.cases import CaseStore, State
from tests.evidence.evidence_support import make_violation

T0 = datetime(2026, 3, 1, tzinfo=UTC)
RULES = {
    "cross-door-trading": (["cam-a", "cam-b"], ["shop-1", "shop-2"]),
    "stray-non-motor": (["cam-a", "cam-c"], ["walk-1", "walk-2"]),
    "fire-lane-occupied": (["mag-1", "mag-2"], ["lane-1"]),
    "muck-truck-off-route": (["gps-7"], [None]),
}


def fill(store: CaseStore, n: int, seed: int = 3) -> list[dict]:
    """n cases written as the store writes them (the violation JSON in its column)."""
    rnd = random.Random(seed)
    rows, facts = [], []
    for i in range(n):
        rule = rnd.choice(sorted(RULES))
        devices, zones = RULES[rule]
        chosen = list(dict.fromkeys(rnd.choice(devices) for _ in range(rnd.choice((1, 1, 2)))))
        opened = T0 + timedelta(minutes=37 * i + rnd.randrange(30))
        state = rnd.choice(list(State)).value
        zone = rnd.choice(zones)
        vid = f"{i:020x}"
        violation = {"violation_id": vid, "rule_id": rule, "devices": chosen, "zone_id": zone}
        violation |= {"zone_kind": "x", "party": "m-1" if rule == "cross-door-trading" else None}
        case_id = f"{opened:%Y%m%d}-{vid}"
        ts = opened.timestamp()
        rows.append(
            (case_id, vid, state, rule, "cat", "site", ts, ts + 900, ts, json.dumps(violation))
        )
        facts.append({"case_id": case_id, "opened": opened, "state": state, **violation})
    with store.lock:
        store.db.executemany(
            "INSERT INTO cases (case_id, violation_id, state, rule_id, category, site_id,"
            " opened_at, deadline, updated_at, violation) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    return facts


def expected(facts: list[dict], f: CaseFilter) -> list[str]:
    hits = [
        x
        for x in facts
        if (f.rule is None or x["rule_id"] == f.rule)
        and (f.state is None or x["state"] == f.state)
        and (f.zone is None or x["zone_id"] == f.zone)
        and (f.device is None or f.device in x["devices"])
        and (f.since is None or x["opened"] >= f.since)
        and (f.until is None or x["opened"] < f.until)
    ]
    hits.sort(key=lambda x: x["opened"], reverse=True)
    return [x["case_id"] for x in hits]


@pytest.fixture
def store(tmp_path: Path):
    store = CaseStore(tmp_path / "cases.sqlite")
    yield store
    store.close()


def test_every_filter_combination_and_page_agrees(store: CaseStore) -> None:
    facts = fill(store, 400)
    query = CaseQuery(store)
    since, until = T0 + timedelta(days=3), T0 + timedelta(days=7)
    options = {
        "rule": [None, "stray-non-motor", "muck-truck-off-route"],
        "state": [None, "closed", "opened"],
        "zone": [None, "walk-1", "lane-1"],
        "device": [None, "cam-a", "mag-2", "gps-7"],
        "dates": [(None, None), (since, None), (since, until)],
    }
    checked = 0
    for rule, state, zone, device, (lo, hi) in itertools.product(*options.values()):
        f = CaseFilter(rule=rule, state=state, zone=zone, device=device, since=lo, until=hi)
        want = expected(facts, f)
        got: list[str] = []
        number = 1
        while True:
            page = query.page(f, number, 7)
            assert page.total == len(want), f
            got += [row.case_id for row in page.items]
            if number >= page.pages:
                break
            number += 1
        assert got == want, f
        checked += bool(want)
    assert checked > 40  # the combinations are not all empty
    query.close()


def test_rows_carry_the_violation_facts(store: CaseStore) -> None:
    violation = make_violation(T0, devices=("cam-1", "mag-1"))
    case, _ = store.open(violation)
    row = CaseQuery(store).page(CaseFilter()).items[0]
    assert row.case_id == case.case_id and row.rule_id == "cross-door-trading"
    assert (row.zone, row.zone_kind, row.devices) == (
        "shopfront-wang",
        "shopfront",
        ["cam-1", "mag-1"],
    )
    assert row.party == "m-0001" and row.packaged is False and row.escalated is False
    assert row.opened_at == violation.opened_at and row.deadline == violation.deadline
    store.escalate_overdue(violation.deadline + timedelta(seconds=1))
    assert CaseQuery(store).page(CaseFilter(device="mag-1")).items[0].escalated is True


def test_device_side_table_keeps_up_across_connections(store: CaseStore, tmp_path: Path) -> None:
    fill(store, 20)
    query = CaseQuery(tmp_path / "cases.sqlite")
    assert query.sync() > 0 and query.sync() == 0
    before = query.page(CaseFilter(device="cam-1")).total
    store.open(make_violation(T0 + timedelta(days=90), devices=("cam-1",)))  # another connection
    assert query.page(CaseFilter(device="cam-1")).total == before + 1
    assert "cam-1" in query.devices()
    # a store replaced by an older copy (fewer rows than the mark): rebuilt, not trusted
    with store.lock:
        store.db.execute("DELETE FROM cases WHERE rowid > 10")
    assert query.page(CaseFilter(device="cam-1")).total == 0
    assert query.page(CaseFilter()).total == 10


def test_filters_use_indexes(store: CaseStore) -> None:
    fill(store, 50)
    query = CaseQuery(store)
    db = query._db()

    def plan(f: CaseFilter) -> str:
        parts, params = f.conditions()
        where = f" WHERE {' AND '.join(parts)}" if parts else ""
        sql = f"SELECT rowid FROM cases{where} ORDER BY opened_at DESC, rowid DESC LIMIT 5"
        return " | ".join(r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    assert "USING COVERING INDEX cases_opened" in plan(CaseFilter())
    assert "INDEX cases_rule_opened" in plan(CaseFilter(rule="stray-non-motor"))
    assert "INDEX cases_state_opened" in plan(CaseFilter(state="closed"))
    assert "INDEX cases_zone" in plan(CaseFilter(zone="walk-1"))
    assert "SCAN cases" not in plan(CaseFilter(zone="walk-1"))
    assert ZONE == "json_extract(violation, '$.zone_id')"


def test_rules_zones_and_bad_state(store: CaseStore) -> None:
    fill(store, 60)
    query = CaseQuery(store)
    assert query.rules() == sorted(RULES)
    assert query.zones() == ["lane-1", "shop-1", "shop-2", "walk-1", "walk-2"]
    with pytest.raises(ValueError):
        CaseFilter(state="lost")
    assert query.page(CaseFilter(), 99, 10).items == []


def test_parse_when() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    assert parse_when("2026-03-01", tz) == datetime(2026, 3, 1, tzinfo=tz)
    assert parse_when("2026-03-01", tz, end=True) == datetime(2026, 3, 2, tzinfo=tz)
    assert parse_when("2026-03-01T08:00", tz) == datetime(2026, 3, 1, 8, tzinfo=tz)
    assert parse_when("2026-03-01T08:00:00Z", tz) == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert parse_when("", tz) is None and parse_when(None, tz) is None
    with pytest.raises(ValueError):
        parse_when("yesterday", tz)
