"""Decisions applied to the case store: the life cycle enforced, once per idempotency key."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from evidence.cases import CaseStore, State
from evidence.decisions import (
    IMPOSSIBLE,
    KEY_REUSED,
    NOT_ACKNOWLEDGED,
    UNKNOWN_CASE,
    Decision,
    Refused,
    allowed_events,
    apply_decision,
)
from evidence.feed import CaseFeed
from evidence.package import case_id_of
from evidence.service import EvidenceService
from tests.evidence.evidence_support import make_violation, site_config

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path):
    s = CaseStore(tmp_path / "cases.sqlite")
    yield s
    s.close()


def _case(store: CaseStore, upto: State = State.ACKNOWLEDGED, review: str | None = None) -> str:
    case, _ = store.open(make_violation(START), START)
    path = [State.EVIDENCE_COMPLETE, State.SUBMITTED, State.ACKNOWLEDGED]
    for state in path[: path.index(upto) + 1]:
        columns = {"review": review} if state is State.EVIDENCE_COMPLETE and review else {}
        store.transition(case.case_id, state, START, **columns)
    return case.case_id


def test_a_decision_moves_the_case_and_records_who_and_why(store: CaseStore) -> None:
    case_id = _case(store)
    at = START + timedelta(hours=2)
    decision = Decision(event="confirmed", at=at, by="王审核", reason="clear photo", ref="CS-1")
    applied = apply_decision(store, case_id, decision, "k1", "http")
    assert not applied.replay
    assert applied.result["state"] == "confirmed" and applied.result["from"] == "acknowledged"
    case = store.get(case_id)
    assert case.state is State.CONFIRMED and case.updated_at == at
    event = store.events(case_id)[-1]
    assert event.event == "confirmed" and event.at == at
    assert event.data["by"] == "王审核" and event.data["reason"] == "clear photo"
    assert event.data | {"recorded_at": None} == {
        "from": "acknowledged",
        "by": "王审核",
        "reason": "clear photo",
        "ref": "CS-1",
        "source": "http",
        "key": "k1",
        "recorded_at": None,
    }


def test_replay_returns_the_first_result_and_changes_nothing(store: CaseStore) -> None:
    case_id = _case(store)
    decision = Decision(event="rectified", by="casesys")
    first = apply_decision(store, case_id, decision, "k1", "mqtt")
    events = len(store.events(case_id))
    again = apply_decision(store, case_id, Decision(event="rectified", by="casesys"), "k1", "http")
    assert again.replay and again.result == first.result
    assert len(store.events(case_id)) == events
    assert store.get(case_id).state is State.RECTIFIED


def test_same_key_with_another_body_is_refused(store: CaseStore) -> None:
    case_id = _case(store)
    apply_decision(store, case_id, Decision(event="confirmed"), "k1", "http")
    with pytest.raises(Refused) as refused:
        apply_decision(store, case_id, Decision(event="closed"), "k1", "http")
    assert refused.value.reason == KEY_REUSED
    other = _other_case(store)
    with pytest.raises(Refused) as refused:  # the same body for another case is another request
        apply_decision(store, other, Decision(event="confirmed"), "k1", "http")
    assert refused.value.reason == KEY_REUSED
    assert store.get(case_id).state is State.CONFIRMED


def _other_case(store: CaseStore) -> str:
    case, _ = store.open(make_violation(START, 1), START)
    for state in (State.EVIDENCE_COMPLETE, State.SUBMITTED, State.ACKNOWLEDGED):
        store.transition(case.case_id, state, START)
    return case.case_id


def test_impossible_transitions_are_refused_with_the_state(store: CaseStore) -> None:
    case_id = _case(store)
    apply_decision(store, case_id, Decision(event="rectified"), "k1", "http")
    with pytest.raises(Refused) as refused:
        apply_decision(store, case_id, Decision(event="notified", how="sms"), "k2", "http")
    assert refused.value.reason == IMPOSSIBLE and refused.value.state == "rectified"
    assert "rectified" in refused.value.detail and "notified" in refused.value.detail
    # a refusal is not recorded: the key stays free
    apply_decision(store, case_id, Decision(event="closed"), "k2", "http")
    assert store.get(case_id).state is State.CLOSED


def test_out_of_order_then_in_order(store: CaseStore) -> None:
    case_id = _case(store, upto=State.SUBMITTED)
    notified = Decision(event="notified", how="letter")
    with pytest.raises(Refused) as refused:
        apply_decision(store, case_id, notified, "n1", "http")
    assert refused.value.reason == NOT_ACKNOWLEDGED and refused.value.state == "submitted"
    assert "acknowledgement" in refused.value.detail
    store.transition(case_id, State.ACKNOWLEDGED)
    with pytest.raises(Refused) as refused:  # notified comes after a confirmation
        apply_decision(store, case_id, notified, "n1", "http")
    assert refused.value.reason == IMPOSSIBLE
    apply_decision(store, case_id, Decision(event="confirmed"), "c1", "http")
    assert apply_decision(store, case_id, notified, "n1", "http").result["state"] == "notified"


def test_reopened_takes_a_closed_case_back(store: CaseStore) -> None:
    case_id = _case(store)
    apply_decision(store, case_id, Decision(event="closed"), "c", "http")
    with pytest.raises(Refused) as refused:
        apply_decision(store, case_id, Decision(event="rectified"), "r", "http")
    assert refused.value.reason == IMPOSSIBLE and refused.value.state == "closed"
    result = apply_decision(
        store, case_id, Decision(event="reopened", reason="appeal"), "o", "http"
    )
    assert result.result["state"] == "acknowledged" and result.result["event"] == "reopened"
    assert store.events(case_id)[-1].event == "reopened"
    with pytest.raises(Refused):
        apply_decision(store, case_id, Decision(event="reopened"), "o2", "http")
    assert allowed_events(State.CLOSED, None) == ["reopened"]
    assert allowed_events(State.ACKNOWLEDGED, None) == [
        "confirmed",
        "rejected",
        "rectified",
        "closed",
    ]


def test_unknown_case_and_bad_bodies(store: CaseStore) -> None:
    with pytest.raises(Refused) as refused:
        apply_decision(store, "20261123-nope", Decision(event="closed"), "k", "http")
    assert refused.value.reason == UNKNOWN_CASE
    with pytest.raises(ValidationError):
        Decision(event="notified")  # without how
    with pytest.raises(ValidationError):
        Decision.model_validate({"event": "approved"})
    with pytest.raises(ValidationError):
        Decision.model_validate({"event": "closed", "at": "2026-11-23T08:00:00"})  # no offset
    with pytest.raises(ValidationError):
        Decision.model_validate({"event": "closed", "extra": 1})


def test_box_review_confirm_keeps_the_state_and_lets_the_feed_send(store: CaseStore) -> None:
    case_id = _case(store, upto=State.EVIDENCE_COMPLETE, review="pending")
    assert allowed_events(State.EVIDENCE_COMPLETE, "pending") == ["confirmed", "rejected"]
    with pytest.raises(Refused) as refused:
        apply_decision(store, case_id, Decision(event="closed"), "x", "console")
    assert refused.value.reason == IMPOSSIBLE and refused.value.state == "evidence_complete"
    applied = apply_decision(store, case_id, Decision(event="confirmed", by="op"), "r1", "console")
    assert (
        applied.result["state"] == "evidence_complete" and applied.result["review"] == "confirmed"
    )
    case = store.get(case_id)
    assert case.state is State.EVIDENCE_COMPLETE and case.review == "confirmed"
    assert store.events(case_id)[-1].data["review"] == "confirmed"
    with pytest.raises(Refused) as refused:  # reviewed: now it waits for the case system
        apply_decision(store, case_id, Decision(event="rejected"), "r2", "console")
    assert refused.value.reason == NOT_ACKNOWLEDGED


def test_box_review_reject_ends_the_case_on_the_box(store: CaseStore) -> None:
    case_id = _case(store, upto=State.EVIDENCE_COMPLETE, review="pending")
    decision = Decision(event="rejected", by="op", reason="a shadow, not a bicycle")
    applied = apply_decision(store, case_id, decision, "r1", "console")
    assert applied.result["state"] == "rejected" and applied.result["review"] == "rejected"
    case = store.get(case_id)
    assert case.state is State.REJECTED and case.review == "rejected"


def test_the_decision_and_its_key_commit_together(store: CaseStore, tmp_path: Path) -> None:
    """A failure after the transition (here: the key row cannot be written) leaves neither."""
    case_id = _case(store)
    apply_decision(store, case_id, Decision(event="confirmed"), "k0", "http")
    store.db.execute(
        "CREATE TRIGGER no_keys BEFORE INSERT ON case_decisions"
        " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        apply_decision(store, case_id, Decision(event="closed"), "k1", "http")
    assert store.get(case_id).state is State.CONFIRMED
    assert [e.event for e in store.events(case_id)][-1] == "confirmed"


class _Built:
    """What EvidenceService needs of a builder: a package folder with a manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger = self

    def recover(self) -> None:
        pass

    def case_id(self, violation) -> str:
        return case_id_of(violation.violation_id, violation.opened_at)

    def build_result(self, violation):
        path = self.root / self.case_id(violation)
        path.mkdir(parents=True, exist_ok=True)
        (path / "manifest.json").write_text("{}")
        return type("Result", (), {"path": path})()


def test_review_required_cases_wait_for_the_operator_before_the_feed(
    store: CaseStore, tmp_path: Path
) -> None:
    service = EvidenceService(_Built(tmp_path / "packages"), store)  # type: ignore[arg-type]
    waits = service.handle(replace(make_violation(START), review_required=True))
    sent = service.handle(make_violation(START, 1))
    confirmed = service.handle(replace(make_violation(START, 2), review_required=True))
    assert waits.state is State.EVIDENCE_COMPLETE and waits.review == "pending"
    assert store.events(waits.case_id)[-1].data["review"] == "pending"
    assert sent.review is None
    apply_decision(store, confirmed.case_id, Decision(event="confirmed", by="op"), "r", "console")
    config = site_config(tmp_path, feed={"http": {"url": "http://127.0.0.1:9/cases"}})
    feed = CaseFeed(config, store)
    try:
        assert feed.enqueue_ready() == 2
    finally:
        feed.close()
    assert store.get(waits.case_id).state is State.EVIDENCE_COMPLETE
    assert store.get(sent.case_id).state is State.SUBMITTED
    assert store.get(confirmed.case_id).state is State.SUBMITTED
