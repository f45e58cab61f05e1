"""The rules page in a real browser: against a real `streetwatch run` on the demo site (the
rules listed, a backtest's table, a broken rule file's reload problem, then fixed again), and
against a console whose engine holds known situations (their progress bars)."""

from __future__ import annotations

from datetime import timedelta

from selenium.webdriver.common.by import By

from tests.browserkit import PASSWORD, login, screenshot, wait_js
from tests.streetwatch.console.test_rules_page import rules_console, stays

BROKEN = """\
id: zz-broken
name: A rule with a typo
category: test/typo
condition:
  kind: presence
  dwel: 10s
"""
RULE = "demo-person-lingering"


def test_rules_backtest_and_a_broken_rule_file(console_run, browser):
    login(browser, console_run.url, "ada", next="/rules")
    assert browser.current_url.endswith("/rules")
    wait_js(browser, "document.getElementById('rules').dataset.loaded === 'yes'", 30, "the rules")
    ids = browser.execute_script(
        "return [...document.querySelectorAll('#rules section.rule')].map(c => c.dataset.rule);"
    )
    assert {RULE, "cross-door-trading", "no-parking-vehicle", "stray-non-motor"} <= set(ids)
    wait_js(browser, "document.getElementById('reload').dataset.ok === 'yes'", 20, "reload ok")
    card = browser.find_element(By.CSS_SELECTOR, f'section.rule[data-rule="{RULE}"]')
    assert "presence of person in a shopfront zone for 8s" in card.text
    assert "Live situations" in card.text

    hours = card.find_element(By.CSS_SELECTOR, "form.backtest input[name=hours]")
    hours.clear()
    hours.send_keys("1")
    card.find_element(By.CSS_SELECTOR, "form.backtest button").click()
    selector = f'section.rule[data-rule="{RULE}"] .backtest-result table'
    wait_js(browser, f"document.querySelector('{selector}')", 60, "the backtest's table")
    summary = card.find_element(By.CSS_SELECTOR, ".backtest-summary").text
    assert "would have opened" in summary and "items replayed from the journal" in summary
    assert card.find_element(By.CSS_SELECTOR, ".backtest-status").text == ""

    broken = console_run.rules / "zz-broken.yaml"
    broken.write_text(BROKEN, encoding="utf-8")
    try:
        wait_js(
            browser,
            "document.getElementById('reload').dataset.ok === 'no'"
            " && document.getElementById('reload').textContent.includes('zz-broken.yaml:6')",
            30,
            "the reload problem on the page",
        )
        problem = browser.find_element(By.CSS_SELECTOR, "#reload li.problem").text
        assert problem.startswith("zz-broken.yaml:6 ") and "dwel" in problem
        assert "zz-broken" not in browser.execute_script(
            "return [...document.querySelectorAll('#rules section.rule')].map(c => c.dataset.rule);"
        )
        browser.execute_script("window.scrollTo(0, 0);")
        screenshot(browser, "rules")
        _screenshot_live_situations(browser)
    finally:
        broken.unlink(missing_ok=True)
    wait_js(browser, "document.getElementById('reload').dataset.ok === 'yes'", 30, "reload ok")
    assert not browser.find_elements(By.CSS_SELECTOR, "#reload li.problem")


def _screenshot_live_situations(browser) -> None:
    """For a person to look at: the first card with a live situation, when the camera has
    put someone in a zone within a little while (not asserted: that depends on the footage)."""
    try:
        wait_js(browser, "document.querySelector('.situation')", 20, "a live situation")
    except AssertionError:
        return
    browser.execute_script(
        "document.querySelector('.situation').closest('section.rule').scrollIntoView();"
    )
    screenshot(browser, "rules-live")


def test_live_situations_show_as_progress_bars(browser, tmp_path):
    for console in rules_console(tmp_path):
        console.server.ctx.users.add("ada", "admin", PASSWORD)  # type: ignore[attr-defined]
        now = console.now
        engine = console.pipeline.engine
        halfway = stays("7", now - timedelta(seconds=30), 30)
        opened = stays("9", now - timedelta(seconds=90), 90)
        for obs in halfway + opened:
            engine.process(obs)
        console.pipeline.journal.write_observations(opened)
        host, port = console.server.address  # type: ignore[attr-defined]
        login(browser, f"http://{host}:{port}", "ada", next="/rules")
        wait_js(browser, "document.querySelectorAll('.situation').length === 2", 20, "situations")
        card = browser.find_element(By.CSS_SELECTOR, 'section.rule[data-rule="bike"]')
        rows = card.find_elements(By.CSS_SELECTOR, ".situation")
        assert "opened" in rows[0].get_attribute("class")
        assert rows[0].text.startswith("bicycle #9 in np-1 · cam-1")
        assert "1m30s · opened" in rows[0].text
        assert rows[1].text.startswith("bicycle #7 in np-1") and "30s / 1m" in rows[1].text
        widths = browser.execute_script(
            "return [...document.querySelectorAll('[data-rule=bike] .bar > div')]"
            ".map(d => d.style.width);"
        )
        assert widths == ["100%", "50%"]
        night = browser.find_element(By.CSS_SELECTOR, 'section.rule[data-rule="night-bay"]')
        assert "nobody in its zones now" in night.text
        card.find_element(By.CSS_SELECTOR, "form.backtest button").click()
        wait_js(browser, "document.querySelector('[data-rule=bike] tbody tr td')", 30, "result")
        cells = card.find_elements(By.CSS_SELECTOR, ".backtest-table tbody td")
        assert [c.text for c in cells[1:]] == ["bicycle #9", "np-1", "cam-1"]
        screenshot(browser, "rules-situations")
