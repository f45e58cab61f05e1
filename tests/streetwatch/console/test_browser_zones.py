"""The zone editor in a real browser against a real `streetwatch run`: an operator draws a zone
on the market camera's latest frame, saves it to devices.yaml and the running camera takes it;
a viewer sees the zones read-only and cannot save."""

from __future__ import annotations

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browserkit import api_session, login, screenshot, wait_js
from tests.runkit import wait_until

CAMERA = "cam-market-01"
LEAD = "# the demo site, for the console's browser tests\n"
CORNERS = [(60, 30), (330, 30), (330, 200), (60, 200)]
"""Frame pixels, in the top of vtest.avi's frame where no zone lies."""


def click_at(driver, canvas, x: float, y: float, double: bool = False) -> None:
    """Click the canvas where frame pixel (x, y) is shown (Selenium offsets are from the
    element's centre, in CSS pixels)."""
    width, height, css_w, css_h = driver.execute_script(
        "const c = arguments[0], r = c.getBoundingClientRect();"
        "return [c.width, c.height, r.width, r.height];",
        canvas,
    )
    dx = x * css_w / width - css_w / 2
    dy = y * css_h / height - css_h / 2
    chain = ActionChains(driver).move_to_element_with_offset(canvas, round(dx), round(dy))
    (chain.double_click() if double else chain.click()).perform()


def test_operator_draws_saves_and_the_running_camera_uses_it(console_run, browser) -> None:
    client, csrf = api_session(console_run.url, "otto")
    url = f"/api/v1/cameras/{CAMERA}/zones"
    original = client.get(url).json()["zones"]
    assert "test-drawn" not in [z["id"] for z in original]
    try:
        login(browser, console_run.url, "otto", next="/zones")
        wait_js(browser, "window.zoneEditor && zoneEditor.ready && !!zoneEditor.frame", 90, "frame")
        canvas = browser.find_element(By.ID, "zone-canvas")
        browser.find_element(By.ID, "zone-new").click()
        for x, y in CORNERS[:-1]:
            click_at(browser, canvas, x, y)
        click_at(browser, canvas, *CORNERS[-1], double=True)  # a double-click closes it
        wait_js(browser, "zoneEditor.drawing === null && zoneEditor.selected >= 0", 10, "closed")
        assert not browser.find_element(By.ID, "zone-owner-row").is_displayed()
        name = browser.find_element(By.ID, "zone-id")
        name.clear()
        name.send_keys("test-drawn")
        Select(browser.find_element(By.ID, "zone-kind")).select_by_value("sidewalk")
        drawn = browser.execute_script("return zoneEditor.zones[zoneEditor.selected];")
        assert drawn["id"] == "test-drawn" and drawn["kind"] == "sidewalk"
        assert len(drawn["polygon"]) == 4, drawn
        for (x, y), (px, py) in zip(CORNERS, drawn["polygon"], strict=True):
            assert abs(px - x) <= 2 and abs(py - y) <= 2, drawn["polygon"]
        screenshot(browser, "zones-editor")
        browser.find_element(By.ID, "zone-save").click()
        wait_js(browser, "zoneEditor.saved >= 1 && zoneEditor.dirty.size === 0", 60, "the save")
        assert browser.find_element(By.ID, "zone-problems").text == ""
        text = console_run.config.read_text(encoding="utf-8")
        assert text.startswith(LEAD) and "id: test-drawn" in text
        assert "polygon: [[" in text.split("id: test-drawn", 1)[1].split("\n", 3)[2]

        def live() -> bool:
            body = client.get(url).json()
            return "test-drawn" in (body["live_zones"] or [])

        wait_until(live, 30, "the running camera to take the new zone")
        assert "test-drawn" in [z["id"] for z in client.get(url).json()["zones"]]
        wait_until(
            lambda: any(
                f"{CAMERA}: zones now" in line and "test-drawn" in line
                for line in console_run.log_text().splitlines()
            ),
            30,
            "the camera's `zones now` log line",
        )
        wait_js(browser, "zoneEditor.ready", 10, "the reloaded editor")
        screenshot(browser, "zones-saved")
    finally:
        version = client.get(url).json()["version"]
        response = client.put(
            url,
            json={"zones": original, "version": version},
            headers={"X-CSRF-Token": csrf},
        )
        assert response.status_code == 200, response.text
    assert "test-drawn" not in console_run.config.read_text(encoding="utf-8")


def test_geographic_zones_on_a_plot(console_run, browser) -> None:
    login(browser, console_run.url, "otto", next="/zones")
    browser.get(f"{console_run.url}/zones#map")
    wait_js(
        browser, "window.zoneEditor && zoneEditor.ready && zoneEditor.target === 'map'", 30, "map"
    )
    browser.find_element(By.CSS_SELECTOR, '#zone-list li[data-zone="school-zone"]').click()
    wait_js(browser, "zoneEditor.selected >= 0", 10, "the school zone selected")
    assert browser.find_element(By.ID, "zone-id").get_attribute("value") == "school-zone"
    owner = Select(browser.find_element(By.ID, "zone-owner")).first_selected_option
    assert owner.get_attribute("value") == "gps-muck-07"
    assert browser.find_element(By.ID, "zone-problems").text == ""
    screenshot(browser, "zones-geo")


def test_viewer_sees_zones_read_only_and_cannot_save(console_run, browser) -> None:
    login(browser, console_run.url, "vera", next="/zones")
    wait_js(browser, "window.zoneEditor && zoneEditor.ready", 30, "the editor")
    controls = browser.execute_script(
        "return ['zone-save', 'zone-new', 'zone-delete', 'zone-close']"
        ".filter((id) => document.getElementById(id) !== null);"
    )
    assert controls == []
    assert "read-only" in browser.find_element(By.ID, "zones-readonly").text
    canvas = browser.find_element(By.ID, "zone-canvas")
    click_at(browser, canvas, *CORNERS[0])
    click_at(browser, canvas, 100, 450)  # inside shopfront-wang: selects it, for reading
    assert browser.execute_script("return zoneEditor.drawing;") is None
    assert browser.find_element(By.ID, "zone-id").get_attribute("disabled") == "true"
    client, csrf = api_session(console_run.url, "vera")
    url = f"/api/v1/cameras/{CAMERA}/zones"
    body = client.get(url).json()
    before = console_run.config.read_bytes()
    response = client.put(
        url,
        json={"zones": body["zones"][:1], "version": body["version"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 403, response.text
    assert console_run.config.read_bytes() == before
