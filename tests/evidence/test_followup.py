"""Clearances → `cleared` events and follow-up ("after") packages, chained like the first."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detectors.observation import GeoPoint, Observation, ObservationKind
from evidence.builder import EvidenceBuilder
from evidence.cases import CLEARED, REPEAT, CaseStore
from evidence.followup import FOLLOW_UP_EVENT
from evidence.keys import Signer
from evidence.ledger import Ledger
from evidence.package import FOLLOW_UP
from evidence.service import EvidenceService
from evidence.verify import verify_chain, verify_package
from ingest.journal import Journal
from rules.clearance import ENDED, Clearance, OpenedSituation
from rules.violation import Violation
from tests.evidence.evidence_support import fill_journal, make_violation, site_config

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def service(tmp_path: Path, ring):
    config = site_config(tmp_path)
    journal = Journal(tmp_path / "journal.sqlite")
    fill_journal(journal, START, 60)
    signer = Signer.load_or_create(tmp_path / "key.pem")
    builder = EvidenceBuilder(config, signer, ring, journal, root=tmp_path / "evidence")
    store = CaseStore(tmp_path / "cases.sqlite")
    yield EvidenceService(builder, store)
    store.close()
    journal.close()


def _clearance(v: Violation, after_s: float) -> Clearance:
    """The camera's `exit` of the subject, as the engine reports its situation's end."""
    last = v.window_end + timedelta(seconds=after_s)
    exit_ = Observation(
        kind=ObservationKind.PRESENCE,
        device_id="cam-1",
        subject=v.subject,
        subject_id=v.subject_id,
        first_seen=v.window_start,
        last_seen=last,
        zone_id=v.zone_id,
        zone_kind=v.zone_kind,
        state="exit",
        location=GeoPoint(121.4373, 31.1952),
    )
    opened = OpenedSituation(
        v.rule_id, v.violation_id, v.situation, v.opened_at, v.devices, v.zone_id, v.location
    )
    return Clearance.of(opened, last.timestamp(), ENDED, exit_)


def test_after_package_verifies_chains_and_names_the_original(service: EvidenceService):
    v = make_violation(START, devices=("cam-1", "mag-1"))
    case = service.handle(v)
    clearance = _clearance(v, 5.0)  # START + 18 s: the view is still in the 30 s ring
    cleared = service.clear(clearance)
    assert cleared is not None and cleared.cleared_at == clearance.cleared_at
    assert cleared.disposal_s == pytest.approx(9.0)
    (event,) = [e for e in service.store.events(case.case_id) if e.event == CLEARED]
    assert event.data["disposal_s"] == pytest.approx(9.0)
    assert event.data["clearance"]["observation"]["state"] == "exit"

    followups = service.followups
    assert followups.pending() == [case.case_id]
    assert not followups.ready(case.case_id, clearance.cleared_at + timedelta(seconds=1))
    assert followups.ready(case.case_id, clearance.cleared_at + timedelta(seconds=2))
    result = service.follow_up(case.case_id)
    assert result is not None and result.created
    assert followups.pending() == []

    path = result.path
    assert path.name == f"{case.case_id}-after"
    assert path.parent == Path(case.package).parent  # beside the original, same date folder
    report, manifest = verify_package(path)
    assert report.ok, report.findings
    assert manifest is not None
    assert manifest["kind"] == FOLLOW_UP and manifest["case_id"] == case.case_id
    assert manifest["follows"]["case_id"] == case.case_id
    assert manifest["follows"]["manifest_sha256"] == case.manifest_sha256
    assert manifest["seq"] == 2 and manifest["prev_manifest_sha256"] == case.manifest_sha256
    assert manifest["time_window"]["disposal_s"] == pytest.approx(9.0)
    assert manifest["time_window"]["within_deadline"] is True
    assert manifest["clearance"]["how"] == ENDED
    roles = {f["role"]: f["path"] for f in manifest["files"]}
    assert roles["snapshot_raw:after"] == "media/cam-1/after.raw.jpg"
    assert roles["snapshot:after"] == "media/cam-1/after.annotated.jpg"
    shot = manifest["media"]["cam-1"]["snapshots"]["after"]["at"]["utc"]
    assert clearance.cleared_at <= datetime.fromisoformat(shot)
    series = json.loads((path / "data/sensor_series.json").read_bytes())["series"]
    assert series["mag-1"]["field_ut"]  # the field up to the clearance
    assert manifest["problems"] == []

    chain = verify_chain(Path(service.builder.ledger.root))
    assert chain.ok, chain.findings
    assert chain.packages == 2 and chain.head["seq"] == 2

    (done,) = [e for e in service.store.events(case.case_id) if e.event == FOLLOW_UP_EVENT]
    assert done.data["package"] == str(path)
    assert done.data["manifest_sha256"] == result.manifest_sha256
    assert done.data["follows"]["manifest_sha256"] == case.manifest_sha256


def test_a_second_clearance_of_a_cleared_case_builds_nothing_twice(service: EvidenceService):
    v = make_violation(START, devices=("cam-1",))
    case = service.handle(v)
    assert service.clear(_clearance(v, 5.0)) is not None
    assert service.clear(_clearance(v, 7.0)) is None  # once per case
    first = service.follow_up(case.case_id)
    again = service.follow_up(case.case_id)
    assert first is not None and again is not None and not again.created
    assert again.manifest_sha256 == first.manifest_sha256
    # a crash after the commit, before its event: the package is found, not built again
    with service.store.lock:
        service.store.db.execute(
            "DELETE FROM case_events WHERE event = ? AND case_id = ?",
            (FOLLOW_UP_EVENT, case.case_id),
        )
    assert service.followups.pending() == [case.case_id]
    found = service.follow_up(case.case_id)
    assert found is not None and not found.created
    assert found.manifest_sha256 == first.manifest_sha256
    events = [e.event for e in service.store.events(case.case_id)]
    assert events.count(CLEARED) == 1 and events.count(FOLLOW_UP_EVENT) == 1
    assert Ledger.read_head(Path(service.builder.ledger.root)).seq == 2
    assert verify_chain(Path(service.builder.ledger.root)).ok


def test_a_cleared_case_waits_for_its_own_package(service: EvidenceService):
    v = make_violation(START, devices=("mag-1",))
    case, _ = service.store.open(v, case_id=service.builder.case_id(v))
    assert service.clear(_clearance(v, 30.0)) is not None
    assert service.followups.pending() == []  # nothing to name yet
    assert service.follow_up(case.case_id) is None
    service.handle(v)
    assert service.followups.pending() == [case.case_id]
    assert service.followups.ready(case.case_id)  # no camera: no post-roll to wait for
    result = service.follow_up(case.case_id)
    assert result is not None
    _, manifest = verify_package(result.path)
    assert manifest is not None and "media" in manifest and manifest["media"] == {}


def test_a_moved_follow_up_is_misplaced(service: EvidenceService):
    v = make_violation(START, devices=("cam-1",))
    case = service.handle(v)
    service.clear(_clearance(v, 5.0))
    result = service.follow_up(case.case_id)
    assert result is not None
    moved = result.path.with_name(f"{case.case_id}-later")
    shutil.move(result.path, moved)
    report, _ = verify_package(moved)
    assert [f.kind for f in report.findings] == ["misplaced"]
    assert "follow-up" in report.findings[0].detail


def test_a_comeback_within_repeat_within_is_linked_to_the_cleared_case(
    service: EvidenceService,
):
    store = service.store
    first = replace(make_violation(START), repeat_within=timedelta(hours=1))
    case1, _ = store.open(first, case_id=service.builder.case_id(first))
    service.clear(_clearance(first, 5.0))  # cleared at START + 18 s
    back = replace(make_violation(START, 30), repeat_within=timedelta(hours=1))
    case2, _ = store.open(back, case_id=service.builder.case_id(back))
    assert service.followups.link_repeat(case2, back) == case1.case_id
    assert store.get(case2.case_id).repeat_of == case1.case_id
    (event,) = [e for e in store.events(case2.case_id) if e.event == REPEAT]
    assert event.data["repeat_of"] == case1.case_id and event.data["back_after_s"] == 17.0
    assert service.followups.link_repeat(case2, back) is None  # once

    # outside the window, or without repeat_within: no link
    late = replace(
        make_violation(START + timedelta(hours=2), 1), repeat_within=timedelta(minutes=30)
    )
    case3, _ = store.open(late, case_id=service.builder.case_id(late))
    assert service.followups.link_repeat(case3, late) is None
    plain = make_violation(START, 40)
    case4, _ = store.open(plain, case_id=service.builder.case_id(plain))
    assert service.followups.link_repeat(case4, plain) is None
    assert store.get(case4.case_id).repeat_of is None
