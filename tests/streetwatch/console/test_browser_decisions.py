"""The case page's decisions panel in a real headless Chromium: an operator rejects a case in the
box review and takes another through confirm → notified; the page shows each new state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from evidence.cases import CaseStore, State
from streetwatch.console import ConsoleServer
from streetwatch.users import UserStore
from tests.browserkit import login, screenshot, wait_js
from tests.consolekit import serve_console
from tests.evidence.evidence_support import make_violation, site_config

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PASSWORD = "decisions-browser-1"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ConsoleServer, CaseStore, list[str]]]:
    config = site_config(tmp_path)
    store = CaseStore(tmp_path / "cases.sqlite")
    ids = []
    for n, (upto, review) in enumerate(
        [(State.EVIDENCE_COMPLETE, "pending"), (State.ACKNOWLEDGED, None)]
    ):
        case, _ = store.open(make_violation(START, n), START)
        for state in (State.EVIDENCE_COMPLETE, State.SUBMITTED, State.ACKNOWLEDGED):
            columns = {"review": review} if review else {}
            store.transition(case.case_id, state, START, **columns)
            if state is upto:
                break
        ids.append(case.case_id)
    server = serve_console(config, tmp_path / "console", cases=store)
    UserStore(server.ctx.config.console.users_file).add("otto", "operator", PASSWORD)  # type: ignore[attr-defined]
    try:
        yield server, store, ids
    finally:
        server.stop()
        store.close()


def _state_is(driver, state: str) -> None:
    wait_js(
        driver,
        f"document.getElementById('case-state')?.textContent.trim() === '{state}'",
        20,
        f"the page to show {state}",
    )


def test_operator_decides_on_the_case_page(served, browser) -> None:
    server, store, (review, acknowledged) = served
    login(browser, server.url, "otto", PASSWORD)

    browser.get(f"{server.url}/cases/{review}")
    assert browser.find_element(By.ID, "review-pending").is_displayed()
    browser.find_element(By.CSS_SELECTOR, "button[data-event='rejected']").click()
    error = browser.find_element(By.ID, "decision-error")
    wait_js(browser, "document.getElementById('decision-error').textContent", 10, "the hint")
    assert "reason" in error.text  # a rejection says why
    browser.find_element(By.ID, "decision-reason").send_keys("a shadow, not goods")
    browser.find_element(By.CSS_SELECTOR, "button[data-event='rejected']").click()
    _state_is(browser, "rejected")
    assert store.get(review).review == "rejected"
    last = store.events(review)[-1]
    assert last.data["by"] == "otto" and last.data["reason"] == "a shadow, not goods"

    browser.get(f"{server.url}/cases/{acknowledged}")
    browser.find_element(By.CSS_SELECTOR, "button[data-event='confirmed']").click()
    _state_is(browser, "confirmed")
    Select(browser.find_element(By.ID, "decision-how")).select_by_visible_text("letter")
    browser.find_element(By.CSS_SELECTOR, "button[data-event='notified']").click()
    _state_is(browser, "notified")
    screenshot(browser, "case-decisions")
    assert store.events(acknowledged)[-1].data["how"] == "letter"
    buttons = browser.find_elements(By.CSS_SELECTOR, "button.decision")
    assert [b.get_attribute("data-event") for b in buttons] == ["rectified", "closed"]
    timeline = browser.find_element(By.ID, "events").text
    assert "notified" in timeline and "confirmed" in timeline
