"""The case life cycle: legal steps recorded with their time, illegal ones refused with a reason."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.cases import NEXT, CaseStore, IllegalTransition, State, UnknownCase
from tests.evidence.evidence_support import make_violation

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HAPPY = [
    State.EVIDENCE_COMPLETE,
    State.SUBMITTED,
    State.ACKNOWLEDGED,
    State.CONFIRMED,
    State.NOTIFIED,
    State.RECTIFIED,
    State.CLOSED,
]


@pytest.fixture
def store(tmp_path: Path):
    s = CaseStore(tmp_path / "cases.sqlite")
    yield s
    s.close()


def test_full_life_cycle_with_times(store: CaseStore) -> None:
    violation = make_violation(START)
    case, new = store.open(violation, START)
    assert new and case.state is State.OPENED
    assert case.deadline == violation.deadline
    for i, state in enumerate(HAPPY, 1):
        case = store.transition(case.case_id, state, START + timedelta(minutes=i), {"by": "test"})
        assert case.state is state
    events = store.events(case.case_id)
    assert [e.event for e in events] == ["opened", *[s.value for s in HAPPY]]
    assert [e.at for e in events] == [START + timedelta(minutes=i) for i in range(len(HAPPY) + 1)]
    assert events[3].data == {"from": "submitted", "by": "test"}
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert not case.is_open


def test_open_is_idempotent_by_violation(store: CaseStore) -> None:
    violation = make_violation(START)
    first, new1 = store.open(violation, START)
    again, new2 = store.open(violation, START + timedelta(hours=1))
    assert new1 and not new2 and again.case_id == first.case_id
    assert len(store.list()) == 1 and len(store.events()) == 1
    assert store.violation(first.case_id).violation_id == violation.violation_id


def test_illegal_transitions_are_refused_with_a_reason(store: CaseStore) -> None:
    case, _ = store.open(make_violation(START), START)
    with pytest.raises(IllegalTransition) as info:
        store.transition(case.case_id, State.CONFIRMED)
    assert "cannot go from opened to confirmed" in str(info.value)
    assert "evidence_complete" in str(info.value)
    for state in HAPPY:
        store.transition(case.case_id, state)
    with pytest.raises(IllegalTransition, match="from closed it may go to acknowledged"):
        store.transition(case.case_id, State.OPENED)
    with pytest.raises(UnknownCase):
        store.transition("no-such-case", State.CLOSED)
    with pytest.raises(ValueError):
        store.transition(case.case_id, "teleported")
    assert store.get(case.case_id).state is State.CLOSED


def test_rejected_on_review_goes_to_closed(store: CaseStore) -> None:
    case, _ = store.open(make_violation(START), START)
    for state in (State.EVIDENCE_COMPLETE, State.SUBMITTED, State.ACKNOWLEDGED, State.REJECTED):
        store.transition(case.case_id, state)
    with pytest.raises(IllegalTransition):
        store.transition(case.case_id, State.NOTIFIED)
    assert store.transition(case.case_id, State.CLOSED).state is State.CLOSED


def test_escalation_once_when_the_deadline_passes(store: CaseStore) -> None:
    late, _ = store.open(make_violation(START, 0), START)
    done, _ = store.open(make_violation(START, 1), START)
    rejected, _ = store.open(make_violation(START, 2), START)
    for state in HAPPY[:6]:
        store.transition(done.case_id, state)
    for state in (*HAPPY[:3], State.REJECTED):
        store.transition(rejected.case_id, state)
    assert store.escalate_overdue(START + timedelta(minutes=10)) == []
    overdue = store.escalate_overdue(START + timedelta(minutes=30))
    assert [c.case_id for c in overdue] == [late.case_id]
    assert store.escalate_overdue(START + timedelta(hours=2)) == []
    event = store.events(late.case_id)[-1]
    assert event.event == "escalated" and event.data["state"] == "opened"
    assert event.data["overdue_s"] == pytest.approx(
        (START + timedelta(minutes=30) - late.deadline).total_seconds()
    )


def test_a_cleared_case_never_escalates_and_is_cleared_once(store: CaseStore) -> None:
    cleared, _ = store.open(make_violation(START, 0), START)
    still, _ = store.open(make_violation(START, 1), START)
    left = cleared.opened_at + timedelta(minutes=4)
    case = store.clear(cleared.case_id, left, {"observation": "exit", "zone_id": "kerb"})
    assert case is not None and case.cleared_at == left and case.disposal_s == 240.0
    assert store.clear(cleared.case_id, left + timedelta(minutes=1)) is None
    assert store.clear("no-such-case", left) is None
    event = store.events(cleared.case_id)[-1]
    assert event.event == "cleared" and event.at == left
    assert event.data == {"disposal_s": 240.0, "observation": "exit", "zone_id": "kerb"}
    overdue = store.escalate_overdue(START + timedelta(hours=1))
    assert [c.case_id for c in overdue] == [still.case_id]
    assert store.get(cleared.case_id).escalated_at is None


def test_escalation_levels_at_the_deadline_and_again_at_twice_it(store: CaseStore) -> None:
    case, _ = store.open(make_violation(START), START)  # disposal within 15 minutes

    def levels(rule_id: str) -> tuple[float, ...]:
        return (1.0, 2.0)

    assert store.escalate_overdue(START + timedelta(minutes=14), levels) == []
    first = store.escalate_overdue(START + timedelta(minutes=16), levels)
    assert [(c.case_id, c.escalation_level) for c in first] == [(case.case_id, 1)]
    assert store.escalate_overdue(START + timedelta(minutes=29), levels) == []
    second = store.escalate_overdue(START + timedelta(minutes=31), levels)
    assert [c.escalation_level for c in second] == [2]
    assert store.escalate_overdue(START + timedelta(hours=5), levels) == []
    events = [e for e in store.events(case.case_id) if e.event == "escalated"]
    assert [(e.data["level"], e.data["of"]) for e in events] == [(1, 2), (2, 2)]
    assert store.get(case.case_id).escalated_at == START + timedelta(minutes=16)


def test_rectified_before_the_deadline_never_escalates(store: CaseStore) -> None:
    case, _ = store.open(make_violation(START), START)
    for state in (*HAPPY[:3], State.RECTIFIED):
        store.transition(case.case_id, state)
    assert store.escalate_overdue(START + timedelta(hours=1)) == []


def test_reopened_and_repeats(store: CaseStore) -> None:
    first, _ = store.open(make_violation(START, 0), START)
    again, _ = store.open(make_violation(START + timedelta(hours=1), 1), START)
    for state in (*HAPPY[:3], State.CLOSED):
        store.transition(first.case_id, state)
    reopened = store.transition(first.case_id, State.ACKNOWLEDGED, event="reopened")
    assert reopened.state is State.ACKNOWLEDGED
    assert store.events(first.case_id)[-1].event == "reopened"
    store.clear(first.case_id, START + timedelta(minutes=3))
    found = store.recently_cleared(first.rule_id, START)
    assert [c.case_id for c in found] == [first.case_id]
    assert store.recently_cleared(first.rule_id, START + timedelta(minutes=4)) == []
    assert store.mark_repeat(again.case_id, first.case_id)
    assert not store.mark_repeat(again.case_id, "another")
    assert store.get(again.case_id).repeat_of == first.case_id
    assert store.events(again.case_id)[-1].data == {"repeat_of": first.case_id}


def test_case_events_table_is_what_the_sink_reads(store: CaseStore) -> None:
    store.open(make_violation(START), START)
    db = sqlite3.connect(store.path)
    columns = [(r[1], r[2], r[5]) for r in db.execute("PRAGMA table_info(case_events)")]
    assert columns == [
        ("seq", "INTEGER", 1),
        ("case_id", "TEXT", 0),
        ("event", "TEXT", 0),
        ("at", "REAL", 0),
        ("data", "TEXT", 0),
    ]
    assert db.execute("SELECT count(*) FROM case_events WHERE seq > 0").fetchone() == (1,)


def test_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "cases.sqlite"
    first = CaseStore(path)
    case, _ = first.open(make_violation(START), START)
    first.transition(case.case_id, State.EVIDENCE_COMPLETE, package="/p", manifest_sha256="ab")
    first.close()
    second = CaseStore(path)
    again = second.get(case.case_id)
    assert again.state is State.EVIDENCE_COMPLETE and again.package == "/p"
    second.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(list(State)), max_size=14))
def test_store_follows_the_life_cycle_model(tmp_path_factory, steps: list[State]) -> None:
    store = CaseStore(tmp_path_factory.mktemp("model") / "cases.sqlite")
    case, _ = store.open(make_violation(START), START)
    model = State.OPENED
    accepted = [State.OPENED.value]
    for target in steps:
        if target in NEXT[model]:
            assert store.transition(case.case_id, target).state is target
            model = target
            accepted.append(target.value)
        else:
            with pytest.raises(IllegalTransition):
                store.transition(case.case_id, target)
    assert store.get(case.case_id).state is model
    assert [e.event for e in store.events(case.case_id)] == accepted
    store.close()


OLD_SCHEMA = """
CREATE TABLE cases (
    case_id         TEXT PRIMARY KEY,
    violation_id    TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    category        TEXT NOT NULL,
    site_id         TEXT NOT NULL,
    opened_at       REAL NOT NULL,
    deadline        REAL,
    escalated_at    REAL,
    package         TEXT,
    manifest_sha256 TEXT,
    updated_at      REAL NOT NULL,
    violation       TEXT NOT NULL
);
CREATE TABLE case_events (
    seq     INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL,
    event   TEXT NOT NULL,
    at      REAL NOT NULL,
    data    TEXT NOT NULL
);
"""


def test_store_of_an_older_release_is_migrated(tmp_path: Path) -> None:
    """A case store made before acknowledgements were recorded gains the columns, keeps its
    cases, and records the acknowledgement of an old case."""
    path = tmp_path / "cases.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute(
        "INSERT INTO cases VALUES ('c-1', 'v-1', 'submitted', 'r', 'cat', 's', ?, NULL, NULL,"
        " '/p', 'ab', ?, '{}')",
        (START.timestamp(), START.timestamp()),
    )
    db.commit()
    db.close()
    for _ in range(2):  # opening twice migrates once
        store = CaseStore(path)
        store.close()
    store = CaseStore(path)
    old = store.get("c-1")
    assert old.state is State.SUBMITTED and old.chain_seq is None and old.acked_at is None
    assert store.acknowledged_head() is None
    acked_at = START + timedelta(minutes=1)
    store.transition(
        "c-1", State.ACKNOWLEDGED, chain_seq=7, acked_at=acked_at.timestamp(), ack_ref="CS-1"
    )
    case = store.get("c-1")
    assert (case.chain_seq, case.acked_at, case.ack_ref) == (7, acked_at, "CS-1")
    assert store.acknowledged_head() == {
        "seq": 7,
        "manifest_sha256": "ab",
        "case_id": "c-1",
        "acked_at": acked_at.isoformat(),
        "ack_ref": "CS-1",
    }
    with pytest.raises(ValueError, match="cannot set"):
        store.transition("c-1", State.CONFIRMED, state="closed")
    store.close()
