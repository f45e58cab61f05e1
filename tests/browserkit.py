"""A real `streetwatch run` on the demo site (the market camera on vtest.avi, the real model,
the sensors) serving its console, and a real headless Chromium (Debian's, driven by its
chromedriver through Selenium) to look at it. One run for the console's test package (it stops
after the package's last test, so its camera does not load the rest of the suite): it takes a
while to start and every browser test only reads it or changes what it restores.

Screenshots land in var/test-artifacts/console/ (kept after the run, for a person to look at).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from streetwatch.demo import demo_rules
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.users import UserStore
from tests.conftest import MARKET_WEIGHTS, REPO, market_site_text
from tests.runkit import wait_until

PASSWORD = "console-test-pass-1"
USERS = {"ada": "admin", "otto": "operator", "vera": "viewer"}
ARTIFACTS = REPO / "var" / "test-artifacts" / "console"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@dataclass
class ConsoleRun:
    url: str
    config: Path
    root: Path
    rules: Path
    log: Path
    proc: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def shared_model_present() -> bool:
    return Path(MARKET_WEIGHTS.split(": ", 1)[1]).exists()


@pytest.fixture(scope="package")
def console_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleRun]:
    """`streetwatch run` with cameras on the market camera, users ada (admin), otto
    (operator) and vera (viewer), all with PASSWORD."""
    if not shared_model_present():
        pytest.skip(f"the shared assets' model is absent ({MARKET_WEIGHTS}): see ../shared")
    folder = tmp_path_factory.mktemp("console-run")
    broker = Mosquitto(folder / "mosquitto").start()
    doc = yaml.safe_load(market_site_text())
    doc["storage"] = {"root": str(folder / "var")}
    doc["console"] = {"users_file": str(folder / "users.yaml")}
    for device in doc["devices"]:
        if device.get("stream", "").startswith("var/"):
            device["stream"] = str(REPO / device["stream"])
    config = folder / "devices.yaml"
    # the operator's file as written by hand: comments and layout the zone editor must keep
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    config.write_text("# the demo site, for the console's browser tests\n" + text)
    users = UserStore(folder / "users.yaml")
    for name, role in USERS.items():
        users.add(name, role, PASSWORD)
    rules = demo_rules(folder)
    port = free_port()
    log = folder / "run.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streetwatch",
                "run",
                "-c",
                str(config),
                "-r",
                str(rules),
                "--broker",
                broker.url,
                "--loop-video",
                "--http-port",
                str(port),
                "--status-every",
                "2",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    run = ConsoleRun(f"http://127.0.0.1:{port}", config, folder / "var", rules, log, proc)

    def started() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"streetwatch run exited: {run.log_text()[-3000:]}")
        return "running:" in run.log_text()

    try:
        wait_until(started, 120, "streetwatch run to start")
        yield run
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        broker.stop()


@pytest.fixture(scope="session")
def chrome_paths() -> tuple[Path, Path]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(f"{path} is missing: `make system-deps` installs Debian's chromium")
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture
def browser(chrome_paths: tuple[Path, Path]) -> Iterator:
    """A fresh headless Chromium (no cookies) per test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = chrome_paths
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    driver.set_page_load_timeout(60)
    driver.implicitly_wait(10)  # find_element waits for the element (a page still loading)
    try:
        yield driver
    finally:
        driver.quit()


def login(driver, base: str, name: str, password: str = PASSWORD, next: str = "/") -> None:
    """Log in through the login page as a person would; waits until the page after it."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login?next={next}")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    wait_until(lambda: "/login" not in driver.current_url, 20, f"{name} to be logged in")


def screenshot(driver, name: str) -> Path:
    """Save the page as var/test-artifacts/console/<name>.png (for a person to look at)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_js(driver, script: str, timeout: float, what: str):
    """Poll a JavaScript expression until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {script}")
        time.sleep(0.2)


def api_session(base: str, name: str, password: str = PASSWORD):
    """An HTTP client logged in as `name` (httpx, cookies kept), and its CSRF token."""
    import re

    import httpx

    client = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
    response = client.post("/login", data={"name": name, "password": password})
    assert response.status_code == 303, response.text
    page = client.get("/").text
    token = re.search(r'name="csrf-token" content="([^"]*)"', page)
    assert token, "the page carries no CSRF token"
    return client, token.group(1)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()
