"""Security of a whole `streetwatch run` process: it logs in to a broker that wants a password
and enforces an ACL, takes every secret from the environment or an owner-only file, never
writes one to its log, its summary or its HTTP endpoints, keeps those endpoints on loopback,
and refuses to start with a signing key others can read or with credentials the broker
refuses."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from streetwatch.localbroker import Mosquitto, free_port
from tests.conftest import REPO
from tests.faults.conftest import Reliability
from tests.runkit import (
    FAULTS,
    CaseSystem,
    RunProcess,
    account,
    all_analysed,
    delivered,
    demo_site,
    scenario,
    wait_until,
)

BOX, BOX_PASSWORD = "box-7", "Bx-pa55%s-word"
SIM, SIM_PASSWORD = "street", "St-secret-42"
TOKEN = "case-token-9f3b1c7d2e"
DSN_PASSWORD = "Pg-hunter2-secret"


def password_file(path: Path, users: dict[str, str]) -> Path:
    exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.path.exists(exe):
        pytest.skip("mosquitto_passwd is not installed (Debian's mosquitto package ships it)")
    create = ["-c"]
    for user, password in users.items():
        subprocess.run([exe, "-b", *create, str(path), user, password], check=True, timeout=10)
        create = []
    return path


@pytest.fixture
def guarded_broker(tmp_path: Path) -> Mosquitto:
    """Mosquitto with a password file and an ACL: the box may only read its site's topics, the
    street (the simulator) may only write them."""
    passwd = password_file(tmp_path / "passwd", {BOX: BOX_PASSWORD, SIM: SIM_PASSWORD})
    acl = tmp_path / "acl"
    acl.write_text(
        f"user {BOX}\ntopic read streetwatch/#\n\nuser {SIM}\ntopic write streetwatch/#\n"
    )
    broker = Mosquitto(
        tmp_path / "mosquitto",
        extra_config=(
            f"per_listener_settings false\nallow_anonymous false\n"
            f"password_file {passwd}\nacl_file {acl}\n"
        ),
    ).start()
    yield broker
    broker.stop()


def secret_file(path: Path, value: str, mode: int = 0o600) -> Path:
    path.write_text(value + "\n")
    path.chmod(mode)
    return path


def site(tmp_path: Path, case_system: CaseSystem, broker: Mosquitto) -> Path:
    config = demo_site(tmp_path, case_system.url)
    doc = yaml.safe_load(config.read_text())
    doc["broker"] = {
        "url": broker.url,
        "client_id": "sw-secure",
        "username_env": "SW_SEC_USER",
        "password_env": "SW_SEC_PASSWORD",
    }
    doc["evidence"]["feed"]["http"]["token_env"] = "SW_SEC_TOKEN"
    doc["timeseries"] = {"dsn_env": "SW_SEC_DSN"}
    config.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return config


def get(port: int, path: str, host: str = "127.0.0.1") -> str:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as page:
            return page.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()


def other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_secrets_stay_secret_behind_a_password_and_an_acl(
    guarded_broker: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    case_system = CaseSystem(fail_first=0, token=TOKEN)
    config = site(tmp_path, case_system, guarded_broker)
    var = tmp_path / "var"
    secrets = tmp_path / "credentials"
    secrets.mkdir(mode=0o700)
    env = {
        "SW_SEC_USER": BOX,
        "SW_SEC_PASSWORD_FILE": str(secret_file(secrets / "mqtt", BOX_PASSWORD)),
        "SW_SEC_TOKEN_FILE": str(secret_file(secrets / "token", TOKEN)),
        "SW_SEC_DSN": f"postgresql://sw:{DSN_PASSWORD}@127.0.0.1:{free_port()}/streetwatch",
    }
    port = free_port()
    run = RunProcess(config, None, tmp_path / "run.log", "--http-port", str(port), env=env)
    messages = scenario(config)
    report = publish_as(messages, guarded_broker, SIM, SIM_PASSWORD)
    assert report.acked == len(messages)
    wait_until(lambda: all_analysed(var, len(messages) - FAULTS), 90, "every reading analysed")
    wait_until(lambda: delivered(var), 90, "every case delivered with the token")
    pages = get(port, "/metrics") + get(port, "/healthz")
    elsewhere = other_address()
    if elsewhere is not None:
        with pytest.raises(OSError):
            socket.create_connection((elsewhere, port), timeout=3).close()
    summary = run.terminate()
    case_system.close()

    books = account(config, var, len(messages) - FAULTS, case_system=case_system)
    assert books.readings_lost == 0 and books.cases_undelivered == 0, books
    assert case_system.unauthorized == 0
    outputs = {"log": run.log.read_text(), "summary": str(summary), "http": pages}
    outputs["log"] += (var / "journal.sqlite").read_bytes().decode(errors="replace")
    leaks = [
        (secret, where)
        for secret in (BOX_PASSWORD, SIM_PASSWORD, TOKEN, DSN_PASSWORD)
        for where, text in outputs.items()
        if secret in text
    ]
    assert "sink" in outputs["log"].lower()  # the DSN was used (and failed): still not echoed
    reliability.record(
        "security",
        "secrets (MQTT password, token, DSN) in log, summary, journal, /metrics, /healthz",
        tried=4,
        lost=len(leaks) + books.lost,
        loopback_checked=elsewhere is not None,
    )
    assert not leaks, leaks


def publish_as(messages: list, broker: Mosquitto, user: str, password: str):
    from streetwatch.simulate import publish_scenario

    return publish_scenario(
        messages,
        url=broker.url,
        client_id="sim-secure",
        speed=90.0,
        username=user,
        password=password,
    )


def start_refused(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streetwatch", "run", "-c", str(config), "--no-cameras"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_refusals_at_start_are_clear_and_never_echo_a_secret(
    guarded_broker: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    case_system = CaseSystem(fail_first=0, token=TOKEN)
    config = site(tmp_path, case_system, guarded_broker)
    secrets = tmp_path / "credentials"
    secrets.mkdir(mode=0o700)
    good = {
        "SW_SEC_USER": BOX,
        "SW_SEC_PASSWORD_FILE": str(secret_file(secrets / "mqtt", BOX_PASSWORD)),
        "SW_SEC_TOKEN": TOKEN,
        "SW_SEC_DSN": f"postgresql://sw:{DSN_PASSWORD}@127.0.0.1:{free_port()}/streetwatch",
    }
    tried: dict[str, str] = {}

    exposed = secret_file(secrets / "exposed", BOX_PASSWORD, mode=0o644)
    result = start_refused(config, {**good, "SW_SEC_PASSWORD_FILE": str(exposed)})
    tried["password file others can read"] = result.stderr
    assert result.returncode != 0
    assert "mode 0644 lets others read" in result.stderr and "chmod 600" in result.stderr

    result = start_refused(config, {**good, "SW_SEC_PASSWORD": SIM_PASSWORD})
    tried["wrong password"] = result.stderr
    assert result.returncode != 0
    assert "Not authorized" in result.stderr, result.stderr[-2000:]

    run = RunProcess(config, None, tmp_path / "run.log", env=good)
    run.terminate()
    key = tmp_path / "var" / "keys" / "box_ed25519.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    result = start_refused(config, good)
    tried["signing key others can read"] = result.stderr
    assert result.returncode != 0
    assert "readable or writable by group/others (mode 0644)" in result.stderr

    leaks = [
        (what, secret)
        for what, text in tried.items()
        for secret in (BOX_PASSWORD, SIM_PASSWORD, TOKEN, DSN_PASSWORD)
        if secret in text
    ]
    reliability.record(
        "security",
        "refused at start: exposed secret file, wrong password, exposed signing key",
        tried=len(tried),
        lost=len(leaks),
    )
    assert not leaks, leaks
    assert all(text.strip().splitlines()[-1].startswith("Error:") for text in tried.values())
