"""The box verifies disposal, in a real (not started) Pipeline fed geomagnetic readings: a car
in a fire lane that leaves after 4 minutes is cleared with an "after" package that verifies, and
never escalates; one that stays escalates; a car back in the same bay repeats the first case."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evidence.cases import CLEARED
from evidence.followup import FOLLOW_UP_EVENT
from evidence.package import FOLLOW_UP
from evidence.verify import verify_chain, verify_package
from ingest.config import load_config
from ingest.readings import GeomagField, GeomagState, Reading, Stream, TimeFlag
from streetwatch.pipeline import CATALOG, Pipeline, PipelineOptions
from tests.conftest import market_site_text

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ARRIVES, LEAVES, BACK, END = 30, 270, 330, 460
"""Seconds after START: the first car in bay 1 arrives and leaves (4 minutes later); a second
car parks there; the readings end. Bay 3's car (on-board sensor) arrives at ARRIVES and stays."""


def _readings() -> list[Reading]:
    out = []
    for s in range(END):
        ts = START + timedelta(seconds=s)
        car = ARRIVES <= s < LEAVES or s >= BACK
        noise = 0.05 * ((s * 7) % 5)  # a real sensor never repeats itself exactly
        field = GeomagField(20.0 + noise, -5.0 - noise, 40.0 + noise + (25.0 if car else 0.0))
        payloads = [("geomag-fl-01", field)]
        if s % 5 == 0:
            payloads.append(("geomag-fl-03", GeomagState(s >= ARRIVES)))
        for device, payload in payloads:
            key = hashlib.sha256(f"{device}/{s}".encode()).hexdigest()[:32]
            received = ts + timedelta(milliseconds=40)
            out.append(Reading(key, device, Stream.GEOMAG, ts, received, TimeFlag.OK, payload))
    return out


@pytest.fixture
def pipeline(tmp_path: Path):
    site = tmp_path / "devices.yaml"
    site.write_text(market_site_text(), encoding="utf-8")
    config = load_config(site)
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (CATALOG / "fire-lane.yaml").read_text(encoding="utf-8")
    (rules / "fire-lane.yaml").write_text(text + "repeat_within: 1h\n", encoding="utf-8")
    options = PipelineOptions(rules_dir=rules, cameras=False, sink=False, batch=40)
    p = Pipeline(config, options)
    yield p
    p.journal.close()
    p.cases.close()


def _analyse_all(p: Pipeline) -> None:
    """The analysis thread's passes until everything journaled is analysed (bounded)."""
    cursor = 0
    for _ in range(500):
        cursor, quiet = p._analyse_once(cursor)
        if quiet:
            return
    raise AssertionError("analysis did not settle in 500 passes")


def test_a_car_that_leaves_is_cleared_with_an_after_package_and_never_escalates(pipeline):
    p = pipeline
    assert p.journal.write(_readings()).inserted == END + END // 5
    _analyse_all(p)
    by_bay = {}
    for case in p.cases.list():
        by_bay.setdefault(p.cases.violation(case.case_id).zone_id, []).append(case)
    assert sorted(by_bay) == ["fire-lane-1", "fire-lane-3"]
    first, second = by_bay["fire-lane-1"]
    (stays,) = by_bay["fire-lane-3"]

    # cleared on the analysis thread, at once: the time to disposal is about 4 minutes less
    # the rule's 30 s dwell (the case opens once the car has stood there 30 s)
    assert first.cleared_at is not None and stays.cleared_at is None
    assert second.cleared_at is None
    stood = (first.cleared_at - START).total_seconds() - ARRIVES
    assert stood == pytest.approx(LEAVES - ARRIVES, abs=8)
    assert first.disposal_s == pytest.approx(LEAVES - ARRIVES - 30, abs=8)
    (cleared,) = [e for e in p.cases.events(first.case_id) if e.event == CLEARED]
    assert cleared.data["disposal_s"] == pytest.approx(first.disposal_s, abs=0.01)
    assert cleared.data["clearance"]["observation"]["state"] == "vacant"
    assert p.counters["cases_cleared"] == 1

    # the car back in the same bay within repeat_within repeats the first case
    assert second.repeat_of == first.case_id and p.counters["repeats"] == 1

    # one pass of the evidence thread (stopping: it builds everything pending, then returns)
    p._stop.set()
    p._package()
    first = p.cases.get(first.case_id)
    assert first.package is not None
    (done,) = [e for e in p.cases.events(first.case_id) if e.event == FOLLOW_UP_EVENT]
    after = Path(done.data["package"])
    assert after.name == f"{first.case_id}-after"
    report, manifest = verify_package(after)
    assert report.ok, report.findings
    assert manifest["kind"] == FOLLOW_UP
    assert manifest["follows"] == {
        "case_id": first.case_id,
        "manifest_sha256": first.manifest_sha256,
        "package": Path(first.package).name,
    }
    assert manifest["time_window"]["within_deadline"] is True
    series = json.loads((after / "data/sensor_series.json").read_bytes())["series"]
    occupancy = series["geomag-fl-01"]["occupancy"]
    assert occupancy[-1]["occupied"] is False  # the series runs up to the bay going vacant
    root = Path(p.builder.ledger.root)
    chain = verify_chain(root)
    assert chain.ok, chain.findings
    assert chain.packages == 4  # three cases and one follow-up, one chain
    assert p.evidence.followups.pending() == []

    # past the 10-minute deadline: the car that stayed escalates, the cleared one never does
    later = first.opened_at + timedelta(minutes=25)
    escalated = {c.case_id for c in p.cases.escalate_overdue(later)}
    assert stays.case_id in escalated and first.case_id not in escalated
    assert p.cases.get(first.case_id).escalated_at is None
