"""Broker security against real Mosquitto processes: passwords, ACLs and TLS client certificates.

Each case runs a private broker (streetwatch.localbroker) and a real MqttIngestor; nothing is
mocked. What Mosquitto 2.0.11 does in each refusal case:

- wrong password, unknown user, no credentials: CONNACK 0x87 "Not authorized" (not 0x86);
- `acl_file` without `read` on our topics: the SUBACK *grants* the subscription (QoS 1) and the
  broker drops the messages at delivery, silently; only the dynamic-security plugin refuses in
  the SUBACK (0x87 "Not authorized");
- a broker certificate from a CA we do not trust, or for another host: our TLS handshake fails
  (CERTIFICATE_VERIFY_FAILED) before any MQTT is spoken;
- no client certificate, or one from a CA the broker does not trust: the TLS 1.3 handshake
  completes on our side, then the broker logs the OpenSSL reason ("peer did not return a
  certificate", "certificate verify failed") and drops the connection before the CONNACK; all
  the client sees is an SSL EOF, so the ingestor can only hint at the client certificate.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.config import load_config
from ingest.journal import Journal
from ingest.mqtt_consumer import BrokerRefused, MqttIngestor
from ingest.yamlsource import ConfigError
from streetwatch.localbroker import Mosquitto
from tests.conftest import write_site
from tests.ingest.test_mqtt_consumer import TOPIC, gps_json, wait_until

pytestmark = pytest.mark.timeout(30)

READER, READER_PASSWORD = "reader", "Rd-7%s&pa55 word"  # '%s' would break %-formatting if leaked
WRITER, WRITER_PASSWORD = "writer", "Wr-9-secret"
FLEET_TOPIC = "fleet/truck-9/position"  # the site's `legacy-gps` device (filter fleet/+/position)

MakeIngestor = Callable[..., MqttIngestor]
StartBroker = Callable[..., Mosquitto]
Credentials = Callable[[str, str], dict[str, str]]


# ---- helpers ---------------------------------------------------------------------------------


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.path.exists(found):
        pytest.skip("mosquitto_passwd is not installed (Debian's mosquitto package ships it)")
    return found


def _password_file(path: Path, users: dict[str, str]) -> Path:
    create = ["-c"]
    for user, password in users.items():
        subprocess.run(
            [_mosquitto_passwd(), "-b", *create, str(path), user, password],
            check=True,
            capture_output=True,
            timeout=10,
        )
        create = []
    return path


def _publish(port: int, topic: str, message: str, *extra: str) -> None:
    args = ["mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(port), "-q", "1"]
    subprocess.run(
        [*args, *extra, "-t", topic, "-m", message], check=True, capture_output=True, timeout=10
    )


def _as(user: str, password: str) -> tuple[str, ...]:
    return ("-u", user, "-P", password)


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    """Start private Mosquitto processes (Mosquitto's arguments); all are stopped afterwards."""
    started: list[Mosquitto] = []

    def start(**kwargs: object) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"mosquitto-{len(started)}", **kwargs)
        started.append(broker)
        return broker.start()

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def make_ingestor(tmp_path: Path, start_broker: StartBroker) -> Iterator[MakeIngestor]:
    """Build ingestors for the test site; each is stopped and its journal closed afterwards.

    (It depends on `start_broker` so that the ingestors stop before their brokers do.)
    """
    made: list[MqttIngestor] = []

    def make(url: str, **broker: object) -> MqttIngestor:
        folder = tmp_path / f"site-{len(made)}"
        folder.mkdir()
        config = load_config(write_site(folder, url, **broker))
        ingestor = MqttIngestor(config, Journal(config.storage.journal))
        made.append(ingestor)
        return ingestor

    yield make
    for ingestor in made:
        ingestor.stop(timeout_s=2)
        ingestor.journal.close()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> Credentials:
    """Export a user name and password; returns the broker settings that name the variables."""

    def export(user: str, password: str) -> dict[str, str]:
        monkeypatch.setenv("SW_TEST_MQTT_USER", user)
        monkeypatch.setenv("SW_TEST_MQTT_PASSWORD", password)
        return {"username_env": "SW_TEST_MQTT_USER", "password_env": "SW_TEST_MQTT_PASSWORD"}

    return export


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name == "streetwatch.ingest"
    ]


def _devices(ingestor: MqttIngestor) -> list[str]:
    return [reading.device_id for _, reading in ingestor.journal.readings()]


# ---- user name and password ------------------------------------------------------------------


@pytest.fixture
def password_broker(tmp_path: Path, start_broker: StartBroker) -> Mosquitto:
    passwd = _password_file(tmp_path / "passwd", {READER: READER_PASSWORD})
    return start_broker(
        extra_config=(
            f"per_listener_settings false\nallow_anonymous false\npassword_file {passwd}\n"
        ),
    )


def test_right_credentials_from_environment_variables_connect_and_ingest(
    password_broker: Mosquitto, make_ingestor: MakeIngestor, credentials: Credentials
) -> None:
    ingestor = make_ingestor(password_broker.url, **credentials(READER, READER_PASSWORD))
    ingestor.start(wait_s=10)
    assert ingestor.connected.is_set() and ingestor.last_error is None
    _publish(
        password_broker.port,
        TOPIC.format("gps-1", "gps"),
        gps_json(1),
        *_as(READER, READER_PASSWORD),
    )
    wait_until(lambda: ingestor.journal.count() == 1, what="the reading")
    assert _devices(ingestor) == ["gps-1"]
    assert ingestor.stats.get("connect_refused") == 0
    assert f"u'{READER}'" in password_broker.log()  # mosquitto saw the user name


@pytest.mark.parametrize(
    ("user", "password"),
    [
        pytest.param(READER, "Wrong-%d-Password!", id="wrong-password"),
        pytest.param("nobody-here", READER_PASSWORD, id="unknown-user"),
    ],
)
def test_bad_credentials_are_refused_clearly_and_the_password_never_shows(
    password_broker: Mosquitto,
    make_ingestor: MakeIngestor,
    credentials: Credentials,
    caplog: pytest.LogCaptureFixture,
    user: str,
    password: str,
) -> None:
    ingestor = make_ingestor(password_broker.url, **credentials(user, password))
    with caplog.at_level(logging.DEBUG), pytest.raises(BrokerRefused) as refused:
        ingestor.start(wait_s=10)
    message = str(refused.value)
    # Mosquitto 2.0.11 answers a bad password with CONNACK 0x87, not 0x86.
    assert "refused the connection" in message
    assert "not authorized" in message.lower() or "bad user name or password" in message.lower()
    assert ingestor.last_error == message
    assert ingestor.stats.get("connect_refused") >= 1
    errors = _errors(caplog)
    assert any("refused the connection" in e and "Not authorized" in e for e in errors), errors
    assert any(password_broker.url in e for e in errors), "the log names the broker"
    for text in (message, repr(refused.value), caplog.text, ingestor.last_error or ""):
        assert password not in text
    assert ingestor.journal.count() == 0


def test_no_credentials_on_a_broker_that_wants_them_is_refused(
    password_broker: Mosquitto, make_ingestor: MakeIngestor, caplog: pytest.LogCaptureFixture
) -> None:
    ingestor = make_ingestor(password_broker.url)
    with caplog.at_level(logging.INFO), pytest.raises(BrokerRefused, match="Not authorized"):
        ingestor.start(wait_s=10)
    assert ingestor.stats.get("connect_refused") >= 1
    assert any("refused the connection" in e for e in _errors(caplog))
    assert "not authorised" in password_broker.log()


@pytest.mark.parametrize("field", ["username_env", "password_env"])
def test_a_named_but_unset_variable_is_a_config_error_naming_it(
    make_ingestor: MakeIngestor, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    monkeypatch.setenv("SW_TEST_MQTT_SET", "box-17")
    monkeypatch.delenv("SW_TEST_MQTT_UNSET", raising=False)
    other = "password_env" if field == "username_env" else "username_env"
    with pytest.raises(ConfigError, match="SW_TEST_MQTT_UNSET") as error:
        make_ingestor(
            "mqtt://127.0.0.1:1883", **{field: "SW_TEST_MQTT_UNSET", other: "SW_TEST_MQTT_SET"}
        )
    assert "not set" in str(error.value)
    assert "box-17" not in str(error.value)


# ---- ACL -------------------------------------------------------------------------------------


def test_acl_file_without_read_access_grants_the_subscription_and_drops_the_messages(
    tmp_path: Path,
    start_broker: StartBroker,
    make_ingestor: MakeIngestor,
    credentials: Credentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mosquitto 2.0 checks an `acl_file` at delivery, not in the SUBACK.

    `reader` may read fleet/# only: its subscription to streetwatch/test-site/+/+ is granted
    and the site's messages vanish; the fleet message, published after them, is the barrier.
    """
    passwd = _password_file(tmp_path / "passwd", {READER: READER_PASSWORD, WRITER: WRITER_PASSWORD})
    acl = tmp_path / "acl"
    acl.write_text(
        f"user {READER}\ntopic read fleet/#\n\n"
        f"user {WRITER}\ntopic write streetwatch/#\ntopic write fleet/#\n"
    )
    broker = start_broker(
        extra_config=(
            "per_listener_settings false\nallow_anonymous false\n"
            f"password_file {passwd}\nacl_file {acl}\nlog_type subscribe\n"
        ),
    )
    ingestor = make_ingestor(broker.url, **credentials(READER, READER_PASSWORD))
    with caplog.at_level(logging.INFO):
        ingestor.start(wait_s=10)
        wait_until(
            lambda: (
                "sw-test 1 streetwatch/test-site/+/+" in broker.log()
                and "sw-test 1 fleet/+/position" in broker.log()
            ),
            what="both subscriptions at the broker",
        )
        _publish(
            broker.port,
            TOPIC.format("gps-1", "gps"),
            gps_json(1),
            *_as(WRITER, WRITER_PASSWORD),
        )
        _publish(broker.port, FLEET_TOPIC, gps_json(2), *_as(WRITER, WRITER_PASSWORD))
        wait_until(lambda: ingestor.journal.count() == 1, what="the fleet reading")
    assert _devices(ingestor) == ["legacy-gps"]
    assert ingestor.stats.received == 1, "the site's message never reached us"
    assert ingestor.stats.get("subscribe_refused") == 0, "Mosquitto granted it in the SUBACK"
    assert not _errors(caplog)
    assert ingestor.connected.is_set()


def _dynsec_plugin() -> str:
    found = sorted(
        glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")
        + glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    )
    if not found:
        pytest.skip("Mosquitto's dynamic security plugin is not installed")
    return found[0]


def _dynsec_client(user: str, password: str, role: str) -> dict:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return {
        "username": user,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": 101,
        "roles": [{"rolename": role}],
    }


def test_a_subscription_refused_in_the_suback_is_logged_at_error_and_counted(
    tmp_path: Path,
    start_broker: StartBroker,
    make_ingestor: MakeIngestor,
    credentials: Credentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The dynamic-security plugin does refuse in the SUBACK (0x87) when it may not subscribe."""
    acl = {"acltype": "subscribePattern", "topic": "fleet/#", "allow": True}
    send = {"acltype": "publishClientSend", "topic": "#", "allow": True}
    dynsec = tmp_path / "dynamic-security.json"
    dynsec.write_text(
        json.dumps(
            {
                "clients": [
                    _dynsec_client(READER, READER_PASSWORD, "fleet-reader"),
                    _dynsec_client(WRITER, WRITER_PASSWORD, "writer"),
                ],
                "roles": [
                    {"rolename": "fleet-reader", "acls": [acl]},
                    {"rolename": "writer", "acls": [send]},
                ],
                "defaultACLAccess": {
                    "publishClientSend": False,
                    "publishClientReceive": True,
                    "subscribe": False,
                    "unsubscribe": True,
                },
            }
        )
    )
    broker = start_broker(
        extra_config=(
            "per_listener_settings false\nallow_anonymous false\n"
            f"plugin {_dynsec_plugin()}\nplugin_opt_config_file {dynsec}\n"
        ),
    )
    ingestor = make_ingestor(broker.url, **credentials(READER, READER_PASSWORD))
    with caplog.at_level(logging.INFO):
        ingestor.start(wait_s=10)  # connected: a refused subscription does not stop start()
        wait_until(lambda: ingestor.stats.get("subscribe_refused") >= 1, what="the refused SUBACK")
        _publish(
            broker.port,
            TOPIC.format("gps-1", "gps"),
            gps_json(1),
            *_as(WRITER, WRITER_PASSWORD),
        )
        _publish(broker.port, FLEET_TOPIC, gps_json(2), *_as(WRITER, WRITER_PASSWORD))
        wait_until(lambda: ingestor.journal.count() == 1, what="the fleet reading")
    # streetwatch/test-site/+/+ refused, fleet/+/position granted
    assert ingestor.stats.get("subscribe_refused") == 1
    errors = [e for e in _errors(caplog) if "refused a subscription" in e]
    assert len(errors) == 1, _errors(caplog)
    assert "Not authorized" in errors[0] and "ACL" in errors[0]
    assert ingestor.last_error is not None and "refused a subscription" in ingestor.last_error
    assert READER_PASSWORD not in caplog.text
    assert _devices(ingestor) == ["legacy-gps"]
    assert ingestor.stats.received == 1


# ---- TLS with client certificates -----------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _new_key_args(key: Path) -> list[str]:
    return [
        *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-nodes", "-keyout", str(key)),
    ]


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl(
        "req",
        "-x509",
        *_new_key_args(key),
        "-out",
        str(cert),
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return key, cert


def _issue(folder: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    key, csr, cert = (folder / f"{name}.{suffix}" for suffix in ("key", "csr", "crt"))
    _openssl("req", *_new_key_args(key), "-out", str(csr), "-subj", f"/CN={name}")
    extfile = folder / f"{name}.ext"
    extfile.write_text(ext)
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca[1]),
        "-CAkey",
        str(ca[0]),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(extfile),
    )
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A site CA with a broker and a client certificate, and a stranger CA with its own client."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("pki")
    ca = _ca(folder, "site-ca")
    server = _issue(
        folder,
        "broker",
        ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    localhost_only = _issue(
        folder,
        "broker-localhost",
        ca,
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    client = _issue(folder, "box-17", ca, "extendedKeyUsage=clientAuth\n")
    stranger_ca = _ca(folder, "stranger-ca")
    stranger = _issue(folder, "stranger-box", stranger_ca, "extendedKeyUsage=clientAuth\n")
    return {
        "ca": ca[1],
        "server_key": server[0],
        "server_cert": server[1],
        "localhost_key": localhost_only[0],
        "localhost_cert": localhost_only[1],
        "client_key": client[0],
        "client_cert": client[1],
        "stranger_ca": stranger_ca[1],
        "stranger_key": stranger[0],
        "stranger_cert": stranger[1],
    }


def _tls_broker(start_broker: StartBroker, pki: dict[str, Path], cert: str = "server") -> Mosquitto:
    """A broker whose second listener (`tls_port`) wants a client certificate from our CA."""
    return start_broker(
        tls={"ca": pki["ca"], "cert": pki[f"{cert}_cert"], "key": pki[f"{cert}_key"]}
    )


@pytest.fixture
def tls_broker(start_broker: StartBroker, pki: dict[str, Path]) -> Mosquitto:
    return _tls_broker(start_broker, pki)


def _tls(pki: dict[str, Path], ca: str = "ca", client: str | None = "client") -> dict[str, str]:
    tls = {"ca_file": str(pki[ca])}
    if client is not None:
        tls |= {"cert_file": str(pki[f"{client}_cert"]), "key_file": str(pki[f"{client}_key"])}
    return tls


def test_tls_with_a_client_certificate_connects_and_ingests(
    tls_broker: Mosquitto, pki: dict[str, Path], make_ingestor: MakeIngestor
) -> None:
    assert tls_broker.tls_port is not None
    ingestor = make_ingestor(f"mqtts://127.0.0.1:{tls_broker.tls_port}", tls=_tls(pki))
    ingestor.start(wait_s=10)
    client_cert = ("--cert", str(pki["client_cert"]), "--key", str(pki["client_key"]))
    _publish(
        tls_broker.tls_port,
        TOPIC.format("gps-1", "gps"),
        gps_json(3),
        "--cafile",
        str(pki["ca"]),
        *client_cert,
    )
    wait_until(lambda: ingestor.journal.count() == 1, what="the reading over TLS")
    assert _devices(ingestor) == ["gps-1"]


def test_a_broker_certificate_from_an_unknown_ca_is_refused_with_the_verify_failure(
    tls_broker: Mosquitto,
    pki: dict[str, Path],
    make_ingestor: MakeIngestor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}"
    ingestor = make_ingestor(url, tls=_tls(pki, ca="stranger_ca"))
    with caplog.at_level(logging.INFO), pytest.raises(BrokerRefused) as refused:
        ingestor.start(wait_s=2)
    message = str(refused.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "certificate verify failed" in message
    assert f"127.0.0.1:{tls_broker.tls_port}" in message
    assert any("CERTIFICATE_VERIFY_FAILED" in e for e in _errors(caplog))
    assert not ingestor.connected.is_set()


def test_a_broker_certificate_for_another_host_is_refused_unless_insecure(
    start_broker: StartBroker,
    pki: dict[str, Path],
    make_ingestor: MakeIngestor,
) -> None:
    """The broker's certificate names only `localhost`; we dial 127.0.0.1."""
    broker = _tls_broker(start_broker, pki, cert="localhost")
    url = f"mqtts://127.0.0.1:{broker.tls_port}"
    strict = make_ingestor(url, tls=_tls(pki))
    with pytest.raises(BrokerRefused, match="CERTIFICATE_VERIFY_FAILED") as refused:
        strict.start(wait_s=2)
    assert "127.0.0.1" in str(refused.value) and "mismatch" in str(refused.value)

    lax = make_ingestor(url, tls={**_tls(pki), "insecure": True})
    lax.start(wait_s=10)
    assert lax.connected.is_set()


@pytest.mark.parametrize(
    ("client", "broker_says"),
    [
        pytest.param(None, "peer did not return a certificate", id="no-client-certificate"),
        pytest.param(
            "stranger", "certificate verify failed", id="client-certificate-of-a-stranger"
        ),
    ],
)
def test_a_box_without_a_trusted_client_certificate_is_refused_clearly(
    tls_broker: Mosquitto,
    pki: dict[str, Path],
    make_ingestor: MakeIngestor,
    caplog: pytest.LogCaptureFixture,
    client: str | None,
    broker_says: str,
) -> None:
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}"
    ingestor = make_ingestor(url, tls=_tls(pki, client=client))
    with caplog.at_level(logging.INFO), pytest.raises(BrokerRefused) as refused:
        ingestor.start(wait_s=2)
    message = str(refused.value)
    assert "closed the connection before accepting it" in message
    assert "client certificate" in message
    assert url in message
    assert any("client certificate" in e for e in _errors(caplog))
    assert ingestor.journal.count() == 0
    wait_until(lambda: broker_says in tls_broker.log(), timeout=5, what=broker_says)
