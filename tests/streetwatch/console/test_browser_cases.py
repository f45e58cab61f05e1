"""The cases pages in a real browser, against a real `streetwatch run` on the demo site: the case
list, a case's clip playing in its <video>, and a tampered package shown as failing."""

from __future__ import annotations

import time
from pathlib import Path

from selenium.webdriver.common.by import By

from tests.browserkit import api_session, login, screenshot, wait_js

CASE_WAIT_S = 150


def full_page_screenshot(driver, name: str) -> None:
    """The whole page (media and charts lie below the fold), then the window as it was."""
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(size["width"], min(max(height + 140, size["height"]), 6000))
    try:
        screenshot(driver, name)
    finally:
        driver.set_window_size(size["width"], size["height"])


def packaged_case_with_clip(base: str) -> dict:
    """The first case whose package holds a clip (bounded poll: the run opens cases by itself)."""
    client, _ = api_session(base, "vera")
    deadline = time.monotonic() + CASE_WAIT_S
    try:
        while True:
            listing = client.get("/api/v1/cases", params={"per_page": 50}).json()
            for item in listing["items"]:
                if not item["packaged"]:
                    continue
                found = client.get(f"/api/v1/cases/{item['case_id']}").json()
                files = (found["verification"] or {}).get("files", [])
                if any(f["path"].endswith("/clip.mp4") for f in files):
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no packaged case with a clip within {CASE_WAIT_S} s: {listing['total']} "
                    "case(s)"
                )
            time.sleep(1.0)
    finally:
        client.close()


def test_case_list_clip_plays_and_tampering_shows(console_run, browser) -> None:
    case = packaged_case_with_clip(console_run.url)
    case_id = case["case"]["case_id"]
    assert case["verification"]["ok"], case["verification"]["findings"]

    login(browser, console_run.url, "vera", next="/cases")
    rows = browser.find_elements(By.CSS_SELECTOR, "#case-table tr.case-row")
    assert case_id in [r.get_attribute("data-case") for r in rows]
    screenshot(browser, "cases-list")

    browser.get(f"{console_run.url}/cases/{case_id}")
    assert browser.find_element(By.ID, "case-id").text == case_id
    assert browser.find_element(By.ID, "verification").get_attribute("data-ok") == "true"
    video = "document.querySelector('video.clip')"
    wait_js(browser, f"{video} && {video}.readyState >= 2", 30, "the clip to load")
    assert browser.execute_script(f"return {video}.videoWidth;") > 0
    start = browser.execute_script(
        f"const v = {video}; v.muted = true; v.play(); return v.currentTime;"
    )
    wait_js(browser, f"{video}.currentTime > {start} + 0.3", 30, "the clip to play")
    wait_js(browser, "document.body.dataset.chartsDrawn === 'true'", 20, "the charts")
    full_page_screenshot(browser, "case-page")

    package = Path(case["case"]["package"])
    assert package.is_relative_to(console_run.root / "evidence")
    snapshot = next(
        package / f["path"]
        for f in case["verification"]["files"]
        if f["role"].startswith("snapshot") and f["path"].endswith(".jpg")
    )
    original = snapshot.read_bytes()
    snapshot.write_bytes(original + b"\0")
    try:
        browser.get(f"{console_run.url}/cases/{case_id}")
        panel = browser.find_element(By.ID, "verification")
        assert panel.get_attribute("data-ok") == "false"
        assert "FAILS verification" in browser.find_element(By.ID, "verdict").text
        findings = browser.find_element(By.ID, "findings").text
        assert "changed_file" in findings and snapshot.name in findings
        colour = browser.execute_script(
            "return getComputedStyle(document.getElementById('findings')).color;"
        )
        assert colour == "rgb(207, 34, 46)"  # --bad: the finding is shown in red
        screenshot(browser, "case-tampered")
    finally:
        snapshot.write_bytes(original)
    browser.get(f"{console_run.url}/cases/{case_id}")
    assert browser.find_element(By.ID, "verification").get_attribute("data-ok") == "true"
