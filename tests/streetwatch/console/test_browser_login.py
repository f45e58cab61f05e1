"""Logging in to the console in a real browser, against a real `streetwatch run`."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.browserkit import PASSWORD, login, screenshot, wait_js


def test_login_page_then_overview_and_logout(console_run, browser):
    browser.get(f"{console_run.url}/cases")
    assert "/login?next=/cases" in browser.current_url
    browser.find_element(By.ID, "name").send_keys("vera")
    browser.find_element(By.ID, "password").send_keys("not her password")
    browser.find_element(By.ID, "login-submit").click()
    error = browser.find_element(By.ID, "login-error").text
    assert error == "wrong name or password"
    screenshot(browser, "login-refused")
    login(browser, console_run.url, "vera", PASSWORD, next="/cases")
    assert browser.current_url.endswith("/cases")
    assert browser.find_element(By.ID, "who-name").text == "vera"
    cookies = {c["name"]: c for c in browser.get_cookies()}
    session = cookies["streetwatch_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    browser.find_element(By.ID, "logout").click()
    wait_js(browser, "location.pathname === '/login'", 10, "the login page after logging out")
    browser.get(f"{console_run.url}/")
    assert "/login" in browser.current_url
