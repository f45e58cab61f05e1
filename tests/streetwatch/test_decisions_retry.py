"""A decision over MQTT that arrives before the box has recorded the case system's
acknowledgement of its case is not lost: the pipeline keeps it pending and tries it again (with a
growing pause) until the acknowledgement is recorded, and gives it up only an hour after its
receipt, refused with its reason. In a real (not started) Pipeline with the clock given."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evidence.cases import State
from ingest.config import load_config
from ingest.decisions import DecisionMessage
from ingest.journal import Journal
from streetwatch.pipeline import CATALOG, Pipeline, PipelineOptions
from tests.conftest import market_site_text
from tests.evidence.evidence_support import make_violation

T0 = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def pipeline(tmp_path: Path):
    site = tmp_path / "devices.yaml"
    site.write_text(market_site_text(), encoding="utf-8")
    config = load_config(site)
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (CATALOG / "fire-lane.yaml").read_text(encoding="utf-8")
    (rules / "fire-lane.yaml").write_text(text, encoding="utf-8")
    p = Pipeline(config, PipelineOptions(rules_dir=rules, cameras=False, sink=False))
    yield p
    p.journal.close()
    p.cases.close()


def _submitted(p: Pipeline, n: int) -> str:
    """A case fed to the case system, its acknowledgement not yet recorded."""
    case, _ = p.cases.open(make_violation(T0 - timedelta(minutes=5), n), T0)
    p.cases.transition(case.case_id, State.EVIDENCE_COMPLETE, T0)
    p.cases.transition(case.case_id, State.SUBMITTED, T0)
    return case.case_id


def _journal(
    p: Pipeline, case_id: str, key: str, received: datetime, event: str = "confirmed"
) -> None:
    message = DecisionMessage(
        key=key,
        case_id=case_id,
        topic=f"streetwatch/x/cases/{case_id}/decision",
        body={"event": event, "by": "审核员"},
        received_ts=received,
    )
    assert p.journal.write([], decisions=[message]).decisions == 1


def _row(p: Pipeline, key: str) -> dict:
    (row,) = [d for d in p.journal.decisions() if d["key"] == key]
    return row


def test_a_decision_before_the_ack_waits_and_is_applied_once_acknowledged(pipeline, caplog):
    p = pipeline
    case_id = _submitted(p, 0)
    _journal(p, case_id, "c-early", T0)
    caplog.set_level(logging.INFO, logger="streetwatch.pipeline")

    assert p._apply_decisions(now=T0) == 0
    row = _row(p, "c-early")
    assert row["outcome"] is None and row["attempts"] == 1
    assert row["detail"].startswith("not_acknowledged: ")
    assert p.counters["decisions_deferred"] == 1 and p.counters["decisions_refused"] == 0
    assert "waits for the case system's acknowledgement" in caplog.text
    # not tried again before its pause (1 s) is over; then again, with a longer pause
    assert p.journal.pending_decisions(now=T0 + timedelta(seconds=0.5)) == []
    assert p._apply_decisions(now=T0 + timedelta(seconds=1)) == 0
    assert _row(p, "c-early")["attempts"] == 2
    assert p.journal.pending_decisions(now=T0 + timedelta(seconds=2.5)) == []
    # a decision behind it is not held up by it
    other = _submitted(p, 1)
    p.cases.transition(other, State.ACKNOWLEDGED, T0)
    _journal(p, other, "c-other", T0 + timedelta(seconds=2))
    assert p._apply_decisions(now=T0 + timedelta(seconds=2.5)) == 1
    assert _row(p, "c-other")["outcome"] == "applied"

    # the case system's acknowledgement is recorded: the next try applies it, once
    p.cases.transition(case_id, State.ACKNOWLEDGED, T0 + timedelta(seconds=4))
    assert p._apply_decisions(now=T0 + timedelta(seconds=10)) == 1
    row = _row(p, "c-early")
    assert row["outcome"] == "applied" and row["attempts"] == 2
    assert p.cases.get(case_id).state == State.CONFIRMED
    assert [e.event for e in p.cases.events(case_id)].count("confirmed") == 1
    assert p._apply_decisions(now=T0 + timedelta(seconds=60)) == 0
    assert p.counters["decisions_applied"] == 2


def test_a_cases_later_decisions_wait_behind_one_that_waits(pipeline):
    """confirmed waits for the acknowledgement; notified, which needs it, comes next and must not
    be refused (or applied) before it, whatever their pauses."""
    p = pipeline
    case_id = _submitted(p, 0)
    _journal(p, case_id, "c-1", T0)
    assert p._apply_decisions(now=T0) == 0
    assert p._apply_decisions(now=T0 + timedelta(seconds=1)) == 0  # next try in 2 s
    notified = DecisionMessage(
        key="n-1",
        case_id=case_id,
        topic=f"streetwatch/x/cases/{case_id}/decision",
        body={"event": "notified", "how": "letter"},
        received_ts=T0 + timedelta(seconds=1.5),
    )
    assert p.journal.write([], decisions=[notified]).decisions == 1
    p.cases.transition(case_id, State.ACKNOWLEDGED, T0 + timedelta(seconds=1.6))
    assert p._apply_decisions(now=T0 + timedelta(seconds=2)) == 0  # held behind c-1
    assert _row(p, "n-1")["outcome"] is None and _row(p, "n-1")["attempts"] == 0
    assert p.cases.get(case_id).state == State.ACKNOWLEDGED
    assert p._apply_decisions(now=T0 + timedelta(seconds=3)) == 2
    assert (_row(p, "c-1")["outcome"], _row(p, "n-1")["outcome"]) == ("applied", "applied")
    assert p.cases.get(case_id).state == State.NOTIFIED
    # in one pass too: a case's second decision is not tried while its first waits
    other = _submitted(p, 1)
    _journal(p, other, "c-2", T0 + timedelta(seconds=4))
    _journal(p, other, "r-2", T0 + timedelta(seconds=4), event="rectified")
    assert p._apply_decisions(now=T0 + timedelta(seconds=4)) == 0
    assert _row(p, "c-2")["attempts"] == 1 and _row(p, "r-2")["attempts"] == 0
    p.cases.transition(other, State.ACKNOWLEDGED, T0 + timedelta(seconds=4.5))
    assert p._apply_decisions(now=T0 + timedelta(seconds=5)) == 2
    assert p.cases.get(other).state == State.RECTIFIED
    events = [e.event for e in p.cases.events(other)]
    assert events.index("confirmed") < events.index("rectified")


def test_a_decision_never_acknowledged_is_refused_an_hour_after_receipt(pipeline, caplog):
    p = pipeline
    case_id = _submitted(p, 0)
    _journal(p, case_id, "c-late", T0)
    caplog.set_level(logging.INFO, logger="streetwatch.pipeline")
    clock, tries = T0, 0
    while clock - T0 < timedelta(seconds=p.DECISION_ACK_WAIT_S):
        assert p._apply_decisions(now=clock) == 0
        tries += 1
        clock += timedelta(seconds=p.DECISION_RETRY_MAX_S)
    # the pause grew to its cap: far fewer tries than passes of the analysis thread
    assert _row(p, "c-late")["attempts"] == tries <= 3600 / 30 + 1
    assert p._apply_decisions(now=clock) == 1
    row = _row(p, "c-late")
    assert row["outcome"] == "refused"
    assert row["detail"].startswith("not_acknowledged: ") and "given up after" in row["detail"]
    assert p.counters["decisions_expired"] == 1
    assert p.counters["decisions_refused.not_acknowledged"] == 1
    assert "given up: still not acknowledged" in caplog.text
    assert p.cases.get(case_id).state == State.SUBMITTED
    assert p._apply_decisions(now=clock + timedelta(hours=1)) == 0


def test_an_older_journal_gains_the_retry_columns(tmp_path: Path):
    import sqlite3

    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,"
        " case_id TEXT NOT NULL, topic TEXT NOT NULL, received_ts REAL NOT NULL,"
        " body TEXT NOT NULL, settled_ts REAL, outcome TEXT, detail TEXT,"
        " UNIQUE (key, case_id, body))"
    )
    db.execute(
        "INSERT INTO decisions (key, case_id, topic, received_ts, body)"
        " VALUES ('k', 'c', 't', ?, '{\"event\": \"closed\"}')",
        (T0.timestamp(),),
    )
    db.commit()
    db.close()
    journal = Journal(path)
    try:
        (row,) = journal.pending_decisions()
        assert row.key == "k" and row.attempts == 0
        journal.defer_decision(row.seq, T0 + timedelta(seconds=5), "not_acknowledged: x")
        assert journal.pending_decisions(now=T0) == []
        assert [d.key for d in journal.pending_decisions(now=T0 + timedelta(seconds=5))] == ["k"]
    finally:
        journal.close()
