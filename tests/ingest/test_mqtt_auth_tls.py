"""Credentials and TLS against a real Mosquitto: accepted when right, refused clearly when not."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.config import load_config
from ingest.journal import Journal
from ingest.mqtt_consumer import BrokerRefused, MqttIngestor
from ingest.yamlsource import ConfigError
from streetwatch.localbroker import Mosquitto
from tests.conftest import write_site
from tests.ingest.test_mqtt_consumer import TOPIC, gps_json, wait_until

SECRET = "s3cret-Pa55"


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(found).exists():
        pytest.skip("mosquitto_passwd is not installed")
    return found


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd = tmp_path / "passwd"
    subprocess.run([_mosquitto_passwd(), "-b", "-c", str(passwd), "box-17", SECRET], check=True)
    broker = Mosquitto(
        tmp_path / "mosquitto",
        extra_config=f"allow_anonymous false\npassword_file {passwd}\n",
    ).start()
    try:
        yield broker
    finally:
        broker.stop()


def _ingestor(tmp_path: Path, url: str, **broker: object) -> MqttIngestor:
    config = load_config(write_site(tmp_path, url, **broker))
    return MqttIngestor(config, Journal(config.storage.journal))


def test_right_credentials_from_the_environment_are_accepted(
    auth_broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SW_USER", "box-17")
    monkeypatch.setenv("SW_PASS", SECRET)
    ingestor = _ingestor(tmp_path, auth_broker.url, username_env="SW_USER", password_env="SW_PASS")
    ingestor.start(wait_s=10)
    try:
        publish = ["mosquitto_pub", "-V", "mqttv5", "-p", str(auth_broker.port), "-q", "1"]
        publish += ["-u", "box-17", "-P", SECRET, "-t", TOPIC.format("gps-1", "gps")]
        subprocess.run([*publish, "-m", gps_json(1)], check=True, timeout=10)
        wait_until(lambda: ingestor.journal.count() == 1, what="the reading")
    finally:
        ingestor.stop()


def test_wrong_password_is_refused_clearly_without_leaking_it(
    auth_broker: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "not-the-Password-42"
    monkeypatch.setenv("SW_USER", "box-17")
    monkeypatch.setenv("SW_PASS", wrong)
    ingestor = _ingestor(tmp_path, auth_broker.url, username_env="SW_USER", password_env="SW_PASS")
    with caplog.at_level(logging.INFO), pytest.raises(BrokerRefused) as refused:
        ingestor.start(wait_s=10)
    ingestor.stop(timeout_s=2)
    message = str(refused.value)
    assert "refused" in message
    assert "user name or password" in message.lower() or "not authorized" in message.lower()
    assert ingestor.stats.get("connect_refused") >= 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("refused" in e for e in errors)
    assert wrong not in caplog.text and wrong not in message


def test_a_named_but_unset_variable_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SW_MISSING", raising=False)
    with pytest.raises(ConfigError, match="SW_MISSING"):
        _ingestor(tmp_path, "mqtt://127.0.0.1:1883", password_env="SW_MISSING")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
    )  # fmt: skip
    return key, cert


def _signed(folder: Path, name: str, ca: tuple[Path, Path], san: str | None) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
    )  # fmt: skip
    args = ["x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0])]
    args += ["-CAcreateserial", "-out", str(cert), "-days", "2"]
    if san:
        ext = folder / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\n")
        args += ["-extfile", str(ext)]
    _openssl(*args)
    return key, cert


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path / "pki"
    folder.mkdir()
    ca = _ca(folder, "site-ca")
    server = _signed(folder, "broker", ca, "IP:127.0.0.1,DNS:localhost")
    client = _signed(folder, "box-17", ca, None)
    _, other_ca = _ca(folder, "someone-else-ca")
    return {
        "ca": ca[1],
        "server_key": server[0],
        "server_cert": server[1],
        "client_key": client[0],
        "client_cert": client[1],
        "other_ca": other_ca,
    }


@pytest.fixture
def tls_broker(tmp_path: Path, pki: dict[str, Path]) -> Iterator[Mosquitto]:
    tls = {"ca": pki["ca"], "cert": pki["server_cert"], "key": pki["server_key"]}
    broker = Mosquitto(tmp_path / "mosquitto", tls=tls).start()
    try:
        yield broker
    finally:
        broker.stop()


def test_tls_with_a_client_certificate_is_accepted(
    tls_broker: Mosquitto, pki: dict[str, Path], tmp_path: Path
) -> None:
    tls = {"ca_file": str(pki["ca"]), "cert_file": str(pki["client_cert"])}
    tls["key_file"] = str(pki["client_key"])
    ingestor = _ingestor(tmp_path, f"mqtts://127.0.0.1:{tls_broker.tls_port}", tls=tls)
    ingestor.start(wait_s=10)
    try:
        publish = [
            "mosquitto_pub",
            "-V",
            "mqttv5",
            "-h",
            "127.0.0.1",
            "-p",
            str(tls_broker.tls_port),
        ]
        publish += ["--cafile", str(pki["ca"]), "--cert", str(pki["client_cert"])]
        publish += ["--key", str(pki["client_key"]), "-q", "1", "-t", TOPIC.format("gps-1", "gps")]
        subprocess.run([*publish, "-m", gps_json(3)], check=True, timeout=10)
        wait_until(lambda: ingestor.journal.count() == 1, what="the reading over TLS")
    finally:
        ingestor.stop()


def test_a_broker_certificate_from_an_unknown_ca_is_refused(
    tls_broker: Mosquitto, pki: dict[str, Path], tmp_path: Path
) -> None:
    tls = {"ca_file": str(pki["other_ca"]), "cert_file": str(pki["client_cert"])}
    tls["key_file"] = str(pki["client_key"])
    ingestor = _ingestor(tmp_path, f"mqtts://127.0.0.1:{tls_broker.tls_port}", tls=tls)
    with pytest.raises(BrokerRefused, match="CERTIFICATE_VERIFY_FAILED"):
        ingestor.start(wait_s=3)
    ingestor.stop(timeout_s=2)


def test_a_box_without_a_client_certificate_is_refused(
    tls_broker: Mosquitto, pki: dict[str, Path], tmp_path: Path
) -> None:
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}"
    ingestor = _ingestor(tmp_path, url, tls={"ca_file": str(pki["ca"])})
    with pytest.raises(BrokerRefused) as refused:
        ingestor.start(wait_s=3)
    ingestor.stop(timeout_s=2)
    assert "closed the connection before accepting it" in str(refused.value)
    assert "client certificate" in str(refused.value)
    assert ingestor.journal.count() == 0
