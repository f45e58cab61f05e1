"""The Live and Overview pages in a real browser, against a real `streetwatch run` (the market
camera on vtest.avi with the real model)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from selenium.webdriver.common.by import By

from streetwatch.scenario_context import SimMessage
from streetwatch.simulate import publish_scenario
from tests.browserkit import login, screenshot, wait_js

IMG = "document.querySelector('section.cam[data-camera=\"cam-market-01\"] img.live')"


def test_live_shows_the_market_camera_frames_advancing_with_its_zones(console_run, browser):
    login(browser, console_run.url, "vera", next="/live")
    assert browser.current_url.endswith("/live")
    wait_js(browser, f"{IMG}.naturalWidth > 0", 60, "the market camera's first frame")
    first = wait_js(browser, f"{IMG}.dataset.frameIndex", 10, "the frame's index")
    src = browser.execute_script(f"return {IMG}.src;")
    wait_js(
        browser,
        f"{IMG}.dataset.frameIndex !== {first!r} && {IMG}.src !== {src!r}"
        f" && {IMG}.naturalWidth > 0",
        20,
        "a newer frame",
    )
    card = browser.find_element(By.CSS_SELECTOR, 'section.cam[data-camera="cam-market-01"]')
    zones = card.find_element(By.CSS_SELECTOR, "ul.zones").text
    assert "no-parking-kerb" in zones and "shopfront-wang" in zones
    wait_js(
        browser,
        "document.querySelector('[data-f=\"fps\"]').textContent !== '–'"
        " && document.querySelector('table.tracks tbody tr')",
        20,
        "the camera's frames/s and tracks",
    )
    assert float(card.find_element(By.CSS_SELECTOR, '[data-f="detect_ms"]').text) > 0
    screenshot(browser, "live")


def _publish_patrol_fixes(console_run) -> None:
    """Ten fixes of the patrol car and one message that is not JSON, through the run's broker."""
    args = list(console_run.proc.args)
    url = args[args.index("--broker") + 1]
    topic = "streetwatch/demo-street/gps-patrol-01/gps"
    now = datetime.now(UTC).isoformat()
    fixes = [
        SimMessage(n * 0.05, topic, json.dumps(
            {"ts": now, "lat": 31.1952 + n * 1e-5, "lon": 121.4373, "speed_kmh": 12.0}
        ).encode())
        for n in range(10)
    ]  # fmt: skip
    bad = SimMessage(0.6, topic, b"{not json", fault="not_json")
    report = publish_scenario([*fixes, bad], url=url, client_id="overview-test")
    assert report.acked == 11


def test_overview_lists_the_devices(console_run, browser):
    _publish_patrol_fixes(console_run)
    login(browser, console_run.url, "vera", next="/")
    wait_js(
        browser,
        "document.querySelector('#devices tr[data-device=\"cam-market-01\"]')"
        " && document.querySelector('#devices tr[data-device=\"gps-patrol-01\"]')",
        20,
        "the device table",
    )
    rows = {
        row.get_attribute("data-device"): row.text
        for row in browser.find_elements(By.CSS_SELECTOR, "#devices tbody tr")
    }
    assert "camera" in rows["cam-market-01"] and "gps" in rows["gps-patrol-01"]
    assert browser.find_element(By.ID, "ov-broker").text == "connected"
    cells = "document.querySelector('#devices tr[data-device=\"gps-patrol-01\"]').cells"
    wait_js(
        browser,
        f"/^[1-9].* \\/min$/.test({cells}[4].textContent) && {cells}[5].textContent !== '0'",
        20,
        "the patrol car's readings and its dead letter",
    )
    assert not browser.find_element(By.ID, "ov-broker-note").text.startswith("0 ")
    # the page polls: its camera row shows frames/s once it has two samples
    wait_js(
        browser,
        "/frames\\/s/.test(document.querySelector("
        "'#devices tr[data-device=\"cam-market-01\"]').textContent)",
        20,
        "the camera's frames/s",
    )
    screenshot(browser, "overview")
