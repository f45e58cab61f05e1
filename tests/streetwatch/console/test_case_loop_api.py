"""The enforcement loop in the console, on a real uvicorn server over a real case store: a case
the box cleared, with its real follow-up ("after") package (real footage through the real
builder, signed with the box's key, chained), decisions from the case system, an escalated case
(two levels) and a repeat; the after package's files served safely; the case page in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By

from detectors.observation import GeoPoint, Observation, ObservationKind
from evidence.builder import EvidenceBuilder
from evidence.case_query import CaseQuery
from evidence.cases import CaseStore, State
from evidence.decisions import Decision, apply_decision
from evidence.followup import FOLLOW_UP_EVENT
from evidence.keys import Signer
from evidence.service import EvidenceService
from evidence.settings import evidence_paths
from ingest.journal import Journal
from rules.clearance import ENDED, Clearance, OpenedSituation
from rules.violation import Violation
from streetwatch.console import ConsoleServer
from streetwatch.users import UserStore
from tests.browserkit import login, screenshot, wait_js
from tests.consolekit import serve_console
from tests.evidence.evidence_support import (
    VideoRing,
    ensure_vtest,
    fill_journal,
    make_violation,
    site_config,
)

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PASSWORD = "case-loop-pass-1"


@dataclass
class Loop:
    server: ConsoleServer
    store: CaseStore
    cleared: str
    """Cleared by the box 9 s after opening, its after package built; confirmed and notified."""
    escalated: str
    """Still open two deadlines on: escalated to level 2 of 2."""
    repeat: str
    """The cleared case's situation back: a repeat of it, waiting for an operator's review."""
    after: Path
    client: httpx.Client


def _clearance(v: Violation, after_s: float) -> Clearance:
    """The camera's `exit` of the subject, as the rules engine reports its situation's end."""
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


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    folder = tmp_path_factory.mktemp("case-loop")
    ring = VideoRing.from_file(ensure_vtest(), "cam-1", START, 30.0)
    config = site_config(folder)
    paths = evidence_paths(config)
    journal = Journal(folder / "journal.sqlite")
    fill_journal(journal, START, 60)
    signer = Signer.load_or_create(paths.key)
    builder = EvidenceBuilder(config, signer, ring, journal, root=paths.root)
    store = CaseStore(paths.cases)
    service = EvidenceService(builder, store)

    v = make_violation(START, 0, devices=("cam-1", "mag-1"))
    cleared = service.handle(v).case_id
    assert service.clear(_clearance(v, 5.0)) is not None
    built = service.follow_up(cleared)
    assert built is not None and built.created
    for state in (State.SUBMITTED, State.ACKNOWLEDGED):
        store.transition(cleared, state, START + timedelta(seconds=20))
    for n, decision in enumerate(
        [
            Decision(event="confirmed", by="reviewer-li", reason="goods on the pavement"),
            Decision(event="notified", by="officer-zhao", how="sms"),
        ]
    ):
        at = START + timedelta(minutes=1 + n)
        apply_decision(store, cleared, decision.model_copy(update={"at": at}), f"k-{n}", "http")

    escalated_case = service.handle(make_violation(START, 1, devices=("cam-1",)))
    opened, deadline = escalated_case.opened_at, escalated_case.deadline
    assert deadline is not None
    levels = (1.0, 2.0)
    store.escalate_overdue(deadline + timedelta(seconds=1), lambda _rule: levels)
    store.escalate_overdue(
        opened + (deadline - opened) * 2 + timedelta(seconds=30), lambda _r: levels
    )

    back = make_violation(START + timedelta(minutes=10), 2, devices=("cam-1",))
    repeat, _ = store.open(back)
    store.transition(repeat.case_id, State.EVIDENCE_COMPLETE, review="pending")
    assert store.mark_repeat(repeat.case_id, cleared, {"back_after_s": 582.0})

    server = serve_console(config, folder / "console", cases=store)
    UserStore(server.ctx.config.console.users_file).add("otto", "operator", PASSWORD)  # type: ignore[attr-defined]
    client = httpx.Client(base_url=server.url, timeout=30)
    response = client.post("/login", data={"name": "otto", "password": PASSWORD})
    assert response.status_code == 303, response.text
    try:
        yield Loop(
            server, store, cleared, escalated_case.case_id, repeat.case_id, built.path, client
        )
    finally:
        client.close()
        server.stop()
        journal.close()
        store.close()


def test_cleared_case_shows_its_disposal_and_verified_after_package(loop: Loop) -> None:
    body = loop.client.get(f"/api/v1/cases/{loop.cleared}").json()
    assert body["case"]["cleared_at"] and body["case"]["repeat_of"] is None
    d = body["disposal"]
    assert d["cleared"]["how"] == ENDED
    assert d["cleared"]["disposal_s"] == pytest.approx(9.0)
    assert d["cleared"]["within_deadline"] is True
    assert d["cleared"]["observation"]["state"] == "exit"
    assert d["deadline"] == body["case"]["deadline"]
    assert [(x["event"], x["by"], x["source"]) for x in d["decisions"]] == [
        ("confirmed", "reviewer-li", "http"),
        ("notified", "officer-zhao", "http"),
    ]
    assert d["decisions"][0]["reason"] == "goods on the pavement"
    assert d["decisions"][1]["how"] == "sms"
    assert d["escalations"] == [] and d["escalation_level"] == 0
    assert d["escalation_levels"] == 1  # the rule's default: once, at the deadline
    assert [r["case_id"] for r in d["repeated_by"]] == [loop.repeat]

    after = d["follow_up"]
    assert after["folder"] == f"{loop.cleared}-after" and after["seq"] == 2
    assert after["manifest"]["follows"]["case_id"] == loop.cleared
    check = after["verification"]
    assert check["ok"] is True and check["pinned"] is True, check["findings"]
    assert check["signature"]["status"] == "ok"
    assert all(c["status"] == "ok" for c in check["chain"])
    details = " ".join(c["detail"] for c in check["chain"])
    assert f"names the manifest of case {loop.cleared}" in details  # link 2 → link 1
    assert "follows the case's own manifest" in details
    roles = {f["role"]: f for f in check["files"]}
    assert roles["snapshot:after"]["url"] == (
        f"/api/v1/cases/{loop.cleared}/after/files/media/cam-1/after.annotated.jpg"
    )
    # the next case's package names the after package's manifest: still a good link
    link = loop.client.get(f"/api/v1/cases/{loop.escalated}").json()["verification"]["chain"][0]
    assert link["status"] == "ok" and "after package" in link["detail"], link


def test_escalated_and_repeat_cases(loop: Loop) -> None:
    d = loop.client.get(f"/api/v1/cases/{loop.escalated}").json()["disposal"]
    assert d["cleared"] is None and d["follow_up"] is None
    assert d["escalation_level"] == 2 and d["escalation_levels"] == 2
    assert [(e["level"], e["of"]) for e in d["escalations"]] == [(1, 2), (2, 2)]
    assert d["escalations"][1]["overdue_s"] > d["escalations"][0]["overdue_s"] > 0
    r = loop.client.get(f"/api/v1/cases/{loop.repeat}").json()
    assert r["case"]["repeat_of"] == loop.cleared and r["case"]["review"] == "pending"
    link = r["disposal"]["repeat_of"]
    assert link["case_id"] == loop.cleared and link["url"] == f"/cases/{loop.cleared}"
    assert link["cleared_at"] and r["disposal"]["review"] == "pending"


def test_list_flags_the_loop(loop: Loop) -> None:
    items = {i["case_id"]: i for i in loop.client.get("/api/v1/cases").json()["items"]}
    cleared, escalated, repeat = items[loop.cleared], items[loop.escalated], items[loop.repeat]
    assert cleared["disposal_s"] == pytest.approx(9.0) and cleared["cleared_at"]
    assert cleared["escalation_level"] == 0 and not cleared["escalated"]
    assert escalated["escalation_level"] == 2 and escalated["escalated"]
    assert escalated["disposal_s"] is None
    assert repeat["repeat_of"] == loop.cleared and repeat["review"] == "pending"
    page = loop.client.get("/cases").text
    row = re.search(rf'data-case="{loop.cleared}".*?</tr>', page, re.S)
    assert row and "cleared 9 s" in row.group(0)
    row = re.search(rf'data-case="{loop.escalated}".*?</tr>', page, re.S)
    assert row and "escalated L2" in row.group(0)
    row = re.search(rf'data-case="{loop.repeat}".*?</tr>', page, re.S)
    assert (
        row and "review pending" in row.group(0) and f'href="/cases/{loop.cleared}"' in row.group(0)
    )


def test_after_files_are_served(loop: Loop) -> None:
    base = f"/api/v1/cases/{loop.cleared}/after/files"
    for rel, kind in [
        ("media/cam-1/after.annotated.jpg", "image/jpeg"),
        ("media/cam-1/after.raw.jpg", "image/jpeg"),
        ("data/clearance.json", "application/json"),
        ("manifest.json", "application/json"),
    ]:
        response = loop.client.get(f"{base}/{rel}")
        assert response.status_code == 200, rel
        assert response.headers["content-type"].startswith(kind), rel
        assert response.content == (loop.after / rel).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/cases/{case}/after/files/../../../etc/passwd",
        "/api/v1/cases/{case}/after/files/%2e%2e/%2e%2e/keys/box_ed25519.pem",
        "/api/v1/cases/{case}/after/files/media/../../{case}/manifest.json",
        "/api/v1/cases/{case}/after/files/%2e%2e/{case}/media/cam-1/clip.mp4",
        "/api/v1/cases/{case}/after/files//etc/passwd",
        "/api/v1/cases/{case}/after/files/media/cam-1",
        "/api/v1/cases/{case}/after/files/media/cam-1/clip.mp4",  # the case's own, not after's
        "/api/v1/cases/{case}/after/files/.ledger/head.json",
        "/api/v1/cases/{open}/after/files/manifest.json",  # no follow-up package
        "/api/v1/cases/..%2f..%2fkeys/after/files/box_ed25519.pem",
        "/api/v1/cases/%2e%2e/after/files/manifest.json",
        "/api/v1/cases/no-such-case/after/files/manifest.json",
    ],
)
def test_no_path_leaves_the_after_package(loop: Loop, path: str) -> None:
    url = path.format(case=loop.cleared, open=loop.escalated)
    response = loop.client.send(loop.client.build_request("GET", httpx.URL(url)))
    assert response.status_code == 404, (url, response.status_code, response.text[:200])
    assert b"PRIVATE KEY" not in response.content and b"root:" not in response.content


def test_tampered_after_snapshot_fails_its_verification(loop: Loop) -> None:
    snapshot = loop.after / "media/cam-1/after.raw.jpg"
    original = snapshot.read_bytes()
    snapshot.write_bytes(original + b"\0")
    try:
        body = loop.client.get(f"/api/v1/cases/{loop.cleared}").json()
        check = body["disposal"]["follow_up"]["verification"]
        assert check["ok"] is False
        assert [(f["kind"], f["where"]) for f in check["findings"]] == [
            ("changed_file", "media/cam-1/after.raw.jpg")
        ]
        assert body["verification"]["ok"] is True  # the case's own package is untouched
        page = loop.client.get(f"/cases/{loop.cleared}").text
        assert "follow-up package FAILS verification" in page
    finally:
        snapshot.write_bytes(original)


def test_case_page_shows_the_loop(loop: Loop) -> None:
    page = loop.client.get(f"/cases/{loop.cleared}").text
    assert 'id="disposal"' in page and "within the deadline" in page
    assert "disposal time <b>9 s</b>" in page
    assert "✓ follow-up package verifies" in page
    assert f"/api/v1/cases/{loop.cleared}/after/files/media/cam-1/after.annotated.jpg" in page
    assert f"/api/v1/cases/{loop.cleared}/files/media/cam-1/latest.annotated.jpg" in page
    assert "reviewer-li" in page and "how: sms" in page
    assert f'href="/cases/{loop.repeat}"' in page
    escalated = loop.client.get(f"/cases/{loop.escalated}").text
    assert "level 2 of 2" in escalated
    repeat = loop.client.get(f"/cases/{loop.repeat}").text
    assert f'repeat of <a href="/cases/{loop.cleared}">' in repeat
    assert "awaiting an operator" in repeat


def test_navigation_has_merchants_and_its_page_renders(loop: Loop) -> None:
    page = loop.client.get("/cases").text
    assert 'href="/merchants"' in page
    merchants = loop.client.get("/merchants")
    assert merchants.status_code == 200 and "m-0001" in merchants.text


def test_openapi_declares_the_loop(loop: Loop) -> None:
    spec = loop.client.get("/api/openapi.json").json()
    assert "/api/v1/cases/{case_id}/after/files/{path}" in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert {"Disposal", "Cleared", "DecisionOut", "EscalationOut", "FollowUpOut"} <= set(schemas)
    assert "disposal" in schemas["CaseDetail"]["properties"]
    assert "disposal_s" in schemas["CaseItem"]["properties"]


def test_case_page_in_a_browser(loop: Loop, browser) -> None:
    login(browser, loop.server.url, "otto", PASSWORD)
    browser.get(f"{loop.server.url}/cases/{loop.cleared}")
    panel = browser.find_element(By.ID, "disposal")
    wait_js(
        browser,
        "[...document.querySelectorAll('#disposal img')].every(i => i.complete && i.naturalWidth)",
        20,
        "the before and after snapshots to load",
    )
    shots = browser.find_elements(By.CSS_SELECTOR, "#disposal .before-after img")
    assert [s.get_attribute("alt") for s in shots] == ["before", "after"]
    assert all(s.size["width"] > 200 for s in shots)
    assert "within the deadline" in panel.text and "follow-up package verifies" in panel.text
    browser.execute_script("arguments[0].scrollIntoView()", panel)
    screenshot(browser, "case-cleared")
    browser.get(f"{loop.server.url}/cases/{loop.escalated}")
    escalation = browser.find_element(By.ID, "disposal-escalation")
    assert "level 2 of 2" in escalation.text
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.ID, "disposal"))
    screenshot(browser, "case-escalated")
    browser.get(f"{loop.server.url}/cases")
    flags = browser.find_elements(By.CSS_SELECTOR, "#case-table td.loop .flag")
    assert {f.text for f in flags} == {"cleared 9 s", "escalated L2", "repeat", "review pending"}
    screenshot(browser, "cases-loop")
    browser.get(f"{loop.server.url}/merchants")
    browser.find_element(By.CSS_SELECTOR, "nav a[href='/merchants']")
    screenshot(browser, "merchants")


def test_loop_lookups_use_indexes(loop: Loop) -> None:
    """The case page's extra lookups stay index searches at 100,000 cases."""
    query = CaseQuery(loop.store)
    try:
        db = query._db()
        for sql, params in [
            ("SELECT case_id FROM cases WHERE repeat_of = ? ORDER BY opened_at LIMIT ?", ("x", 5)),
            (
                "SELECT case_id, json_extract(data, '$.package') FROM case_events"
                " WHERE event = 'follow_up' AND json_extract(data, '$.manifest_sha256') = ?"
                " LIMIT 1",
                ("x",),
            ),
        ]:
            plan = " ".join(str(r[-1]) for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "USING INDEX" in plan and "SCAN" not in plan.replace("SCAN CONSTANT", ""), plan
        assert query.repeats_of(loop.cleared) == [loop.repeat]
        (event,) = [e for e in loop.store.events(loop.cleared) if e.event == FOLLOW_UP_EVENT]
        found = query.follow_up_of(event.data["manifest_sha256"])
        assert found == (loop.cleared, str(loop.after))
    finally:
        query.close()
