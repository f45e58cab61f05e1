"""MQTT ingestion against a real Mosquitto, fed by paho and by mosquitto_pub."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from ingest.config import SiteConfig, load_config
from ingest.journal import Journal
from ingest.mqtt_consumer import MqttIngestor
from streetwatch.localbroker import Mosquitto
from tests.conftest import REPO, write_site

TOPIC = "streetwatch/test-site/{}/{}"


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def mosquitto_pub(broker: Mosquitto, topic: str, message: str | bytes, *extra: str) -> None:
    args = ["mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1"]
    args += ["-t", topic, *extra]
    data = message.encode() if isinstance(message, str) else message
    subprocess.run([*args, "-s"], input=data, check=True, timeout=10)


def gps_json(seq: int, **overrides: object) -> str:
    body = {
        "ts": datetime.now(UTC).isoformat(),
        "lat": 31.19 + seq * 1e-6,
        "lon": 121.43,
        "speed_kmh": 20.0,
        "seq": seq,
    }
    body.update(overrides)
    return json.dumps(body)


class Publisher:
    """A paho MQTT v5 publisher that keeps its own session so it survives broker restarts."""

    def __init__(self, broker: Mosquitto, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(500)
        self.client.reconnect_delay_set(0, 1)
        self.client.connect("127.0.0.1", broker.port, clean_start=False)
        self.client.loop_start()

    def publish(self, topic: str, payload: str | bytes) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def site(tmp_path: Path, mosquitto: Mosquitto) -> SiteConfig:
    return load_config(write_site(tmp_path, mosquitto.url))


@pytest.fixture
def ingestor(site: SiteConfig) -> Iterator[MqttIngestor]:
    journal = Journal(site.storage.journal)
    consumer = MqttIngestor(site, journal)
    consumer.start(wait_s=10)
    try:
        yield consumer
    finally:
        consumer.stop()
        journal.close()


def test_readings_from_mosquitto_pub_and_paho_are_journaled(
    mosquitto: Mosquitto, ingestor: MqttIngestor
) -> None:
    mosquitto_pub(mosquitto, TOPIC.format("gps-1", "gps"), gps_json(1))
    mosquitto_pub(
        mosquitto,
        TOPIC.format("mag-1", "geomag"),
        '{"ts": 1795380000, "x": 30.1, "y": -2.5, "z": 35.0}',
    )
    mosquitto_pub(mosquitto, "fleet/truck-9/position", gps_json(2, lat=31.2))
    publisher = Publisher(mosquitto)
    publisher.publish(
        TOPIC.format("mag-2", "geomag"), '{"ts": 1795380000, "occupied": true}'
    ).wait_for_publish(5)
    publisher.close()

    wait_until(lambda: ingestor.journal.count() == 4, what="4 readings")
    by_device = {r.device_id: r for _, r in ingestor.journal.readings()}
    assert by_device["gps-1"].payload.lat == pytest.approx(31.190001)
    assert by_device["legacy-gps"].payload.lat == pytest.approx(31.2)
    assert by_device["mag-1"].payload.z == pytest.approx(35.0)
    assert by_device["mag-2"].payload.occupied is True
    assert ingestor.stats.get("dead_letters") == 0


def test_snapshot_capture_time_comes_from_user_property(
    mosquitto: Mosquitto, ingestor: MqttIngestor, tmp_path: Path
) -> None:
    from PIL import Image

    image = tmp_path / "snap.jpg"
    Image.new("RGB", (64, 48), (120, 30, 30)).save(image, "JPEG")
    ts = "2026-11-22T10:15:00+08:00"
    args = [
        "mosquitto_pub",
        "-V",
        "mqttv5",
        "-h",
        "127.0.0.1",
        "-p",
        str(mosquitto.port),
        "-q",
        "1",
    ]
    args += ["-t", TOPIC.format("cam-1", "snapshot"), "-f", str(image)]
    args += ["-D", "publish", "user-property", "ts", ts]
    subprocess.run(args, check=True, timeout=10)
    wait_until(lambda: ingestor.journal.count() == 1, what="snapshot")
    ((_, reading),) = ingestor.journal.readings()
    assert (reading.payload.width, reading.payload.height) == (64, 48)
    assert reading.payload.jpeg == image.read_bytes()
    assert reading.device_ts == datetime.fromisoformat(ts)


def test_redelivered_message_is_stored_once(mosquitto: Mosquitto, ingestor: MqttIngestor) -> None:
    payload = gps_json(7)
    for _ in range(3):
        mosquitto_pub(mosquitto, TOPIC.format("gps-1", "gps"), payload)
    wait_until(lambda: ingestor.stats.get("messages_committed") == 3, what="3 commits")
    assert ingestor.journal.count() == 1
    assert ingestor.stats.get("duplicates") == 2


BAD_INPUTS = [
    ("gps-1", "gps", b"this is not json", "not_json"),
    ("gps-1", "gps", b'{"ts": 1795380000, "lat": "31.2", "lon": 121.4}', "wrong_type"),
    ("gps-1", "gps", b'{"ts": 1795380000, "lat": NaN, "lon": 121.4}', "not_finite"),
    ("gps-1", "gps", b'{"ts": 1795380000, "lat": 999, "lon": 121.4}', "out_of_range"),
    ("ghost-7", "gps", b'{"ts": 1795380000, "lat": 31.2, "lon": 121.4}', "unknown_device"),
    (
        "gps-1",
        "gps",
        b'{"ts": 1, "lat": 31.2, "lon": 121.4, "pad": "' + b"x" * 300_000 + b'"}',
        "oversized",
    ),
    ("gps-nmea", "gps", b"$GPRMC,123519,A,4807.038,N,01131.0", "truncated_nmea"),
    (
        "gps-nmea",
        "gps",
        b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6B",
        "bad_checksum",
    ),
    ("mag-1", "telemetry", b'{"ts": 1795380000, "x": 1, "y": 2, "z": 3}', "unknown_stream"),
    ("cam-1", "snapshot", b"\x89PNG\r\n\x1a\n not a jpeg", "bad_image"),
]


def test_bad_input_goes_to_dead_letters_and_ingestion_continues(
    mosquitto: Mosquitto, ingestor: MqttIngestor
) -> None:
    publisher = Publisher(mosquitto)
    for device, stream, payload, _ in BAD_INPUTS:
        publisher.publish(TOPIC.format(device, stream), payload)
    publisher.publish(TOPIC.format("gps-1", "gps"), gps_json(99)).wait_for_publish(5)
    publisher.close()

    wait_until(lambda: ingestor.journal.count() == 1, what="the good reading after the bad ones")
    wait_until(lambda: ingestor.stats.get("dead_letters") == len(BAD_INPUTS), what="dead letters")
    expected: dict[str, int] = {}
    for *_, reason in BAD_INPUTS:
        expected[reason] = expected.get(reason, 0) + 1
    assert ingestor.stats.dead_letters_by_reason() == expected
    assert ingestor.journal.dead_letter_counts() == expected
    oversized = next(d for d in ingestor.journal.dead_letters() if d.reason == "oversized")
    assert oversized.payload_size > 300_000
    assert len(oversized.payload) == ingestor.config.ingest.dead_letter_payload_bytes
    for letter in ingestor.journal.dead_letters():
        assert letter.detail, f"{letter.reason} has no explanation"


def test_messages_published_while_consumer_is_away_arrive_after_restart(
    mosquitto: Mosquitto, site: SiteConfig
) -> None:
    journal = Journal(site.storage.journal)
    first = MqttIngestor(site, journal)
    first.start(wait_s=10)
    first.stop()
    for seq in range(50):
        mosquitto_pub(mosquitto, TOPIC.format("gps-1", "gps"), gps_json(seq))
    second = MqttIngestor(site, journal)
    second.start(wait_s=10)
    try:
        wait_until(lambda: journal.count() == 50, what="50 readings queued in the session")
    finally:
        second.stop()
        journal.close()


def test_broker_restart_mid_stream_loses_nothing(
    mosquitto: Mosquitto, ingestor: MqttIngestor
) -> None:
    publisher = Publisher(mosquitto)
    total = 3000
    infos = []
    for seq in range(total):
        infos.append(publisher.publish(TOPIC.format("gps-1", "gps"), gps_json(seq)))
        if seq == total // 2:
            mosquitto.restart(pause_s=0.5)
        if seq % 100 == 0:
            time.sleep(0.01)
    wait_until(lambda: all(i.is_published() for i in infos), timeout=60, what="publisher acks")
    publisher.close()
    wait_until(lambda: ingestor.journal.count() == total, timeout=60, what=f"{total} readings")
    assert ingestor.stats.get("disconnects") >= 1
    assert ingestor.journal.count() == total


def _run_consumer(config_path: Path) -> subprocess.Popen:
    """`streetwatch run` on the small test site, with no rules (the catalog needs zones and
    merchants this site lacks) and no cameras: ingestion is what is under test."""
    rules = config_path.parent / "no-rules"
    rules.mkdir(exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streetwatch",
            "run",
            "-c",
            str(config_path),
            "-r",
            str(rules),
            "--no-cameras",
            "--status-every",
            "0.5",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_consumer_killed_between_receive_and_journal_gets_the_message_again(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config_path = write_site(tmp_path, mosquitto.url)
    journal_path = load_config(config_path).storage.journal
    consumer = _run_consumer(config_path)
    try:
        wait_until(
            lambda: "subscribing" in mosquitto.log() or journal_path.exists(), what="consumer up"
        )
        # the broker has the subscription (not just the connection): what is published now is
        # ours; a reading published between CONNECT and SUBSCRIBE would go nowhere
        wait_until(
            lambda: "sw-test 1 streetwatch/test-site/+/+" in mosquitto.log(),
            what="the consumer's subscription at the broker",
        )
        for seq in range(10):
            mosquitto_pub(mosquitto, TOPIC.format("gps-1", "gps"), gps_json(seq))
        wait_until(lambda: _count(journal_path) == 10, what="first 10 journaled")

        blocker = sqlite3.connect(journal_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        for seq in range(10, 30):
            mosquitto_pub(mosquitto, TOPIC.format("gps-1", "gps"), gps_json(seq))
        time.sleep(1.0)
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(10)
        blocker.execute("ROLLBACK")
        blocker.close()
        assert _count(journal_path) == 10

        consumer = _run_consumer(config_path)
        wait_until(lambda: _count(journal_path) == 30, timeout=30, what="redelivered 20")
        time.sleep(0.5)
        assert _count(journal_path) == 30
    finally:
        consumer.kill()
        consumer.wait(10)


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=10) as db:
        try:
            return db.execute("SELECT count(DISTINCT key) FROM readings").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_shared_subscription_splits_the_stream_between_two_workers(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    workers = []
    for name in ("w1", "w2"):
        (tmp_path / name).mkdir()
        config = load_config(write_site(tmp_path / name, mosquitto.url, shared_group="sensors"))
        journal = Journal(config.storage.journal)
        worker = MqttIngestor(config, journal, client_id=f"sw-{name}")
        worker.start(wait_s=10)
        workers.append(worker)
    try:
        publisher = Publisher(mosquitto)
        infos = [publisher.publish(TOPIC.format("gps-1", "gps"), gps_json(i)) for i in range(400)]
        wait_until(lambda: all(i.is_published() for i in infos), what="publisher acks")
        publisher.close()
        wait_until(
            lambda: sum(w.journal.count() for w in workers) == 400, what="400 readings in total"
        )
        keys = [{r.key for _, r in w.journal.readings(limit=1000)} for w in workers]
        assert all(keys), "each worker got a share"
        assert not keys[0] & keys[1], "no message was handled by both workers"
    finally:
        for worker in workers:
            worker.stop()
            worker.journal.close()


def test_array_with_one_bad_element_keeps_the_good_ones_and_dead_letters_the_element(
    mosquitto: Mosquitto, ingestor: MqttIngestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3,000 good fixes and one bad one in a JSON array: 3,000 readings and one dead letter
    naming the element, both committed before the message is acknowledged; the same message
    again (a redelivery) doubles nothing."""
    fixes = [{"ts": 1795380000 + i, "lat": 31.19 + i * 1e-6, "lon": 121.43} for i in range(3000)]
    doc = [*fixes[:1234], {"ts": 1795380000, "lon": 121.43}, *fixes[1234:]]
    payload = json.dumps(doc, separators=(",", ":"))
    journal = ingestor.journal
    at_ack: list[tuple[int, dict[str, int]]] = []
    ack_many = ingestor._client.ack_many

    def checked_ack(mids: list[int]) -> None:
        at_ack.extend([(journal.count(), journal.dead_letter_counts())] * len(mids))
        ack_many(mids)

    monkeypatch.setattr(ingestor._client, "ack_many", checked_ack)
    for _ in range(2):
        mosquitto_pub(mosquitto, TOPIC.format("gps-1", "gps"), payload)
    wait_until(lambda: ingestor.stats.get("messages_committed") == 2, what="2 commits")
    assert journal.count() == 3000
    assert at_ack == [(3000, {"missing_field": 1})] * 2
    [letter] = journal.dead_letters()
    assert letter.reason == "missing_field"
    assert letter.detail == "element 1234: lat is missing"
    assert json.loads(letter.payload) == {"ts": 1795380000, "lon": 121.43}
    assert ingestor.stats.dead_letters_by_reason() == {"missing_field": 1}
    assert ingestor.stats.get("duplicates") == 3000
    lats = sorted(r.payload.lat for _, r in journal.readings(limit=5000))
    assert lats == pytest.approx([f["lat"] for f in fixes])


def _nmea(body: str) -> str:
    checksum = 0
    for char in body:
        checksum ^= ord(char)
    return f"${body}*{checksum:02X}\r\n"


def test_nmea_one_sentence_per_message_gives_one_reading_per_fix(
    mosquitto: Mosquitto, ingestor: MqttIngestor
) -> None:
    """RMC then GGA, and GGA then RMC, each sentence its own MQTT message: one reading per fix
    with both sentences' fields; every message sent again changes nothing."""
    now = datetime.now(UTC).replace(microsecond=0)
    messages = []
    for offset, order in ((-2, ("RMC", "GGA")), (-1, ("GGA", "RMC"))):
        at = now.timestamp() + offset
        hms = datetime.fromtimestamp(at, UTC).strftime("%H%M%S.00")
        ddmmyy = datetime.fromtimestamp(at, UTC).strftime("%d%m%y")
        sentence = {
            "RMC": _nmea(f"GNRMC,{hms},A,3111.7000,N,12126.2000,E,10.0,90.0,{ddmmyy},,,A"),
            "GGA": _nmea(f"GNGGA,{hms},3111.7000,N,12126.2000,E,1,14,0.9,12.0,M,9.6,M,,"),
        }
        messages += [sentence[name] for name in order]
    topic = TOPIC.format("gps-nmea", "gps")
    for payload in [*messages, *messages]:
        mosquitto_pub(mosquitto, topic, payload)
    wait_until(lambda: ingestor.stats.get("messages_committed") == 8, what="8 commits")
    stored = [r for _, r in ingestor.journal.readings()]
    assert len(stored) == 2
    for reading in stored:
        fix = reading.payload
        assert fix.source == "nmea"
        assert (fix.speed_kmh, fix.heading) == (pytest.approx(18.52), 90.0)
        assert (fix.hdop, fix.sats) == (0.9, 14)
        assert reading.time_flag.value == "ok"
    assert ingestor.stats.get("readings_merged") == 2
    assert ingestor.stats.get("duplicates") == 4
    assert ingestor.stats.get("dead_letters") == 0


def test_unchanged_snapshot_with_a_new_ts_is_a_new_reading(
    mosquitto: Mosquitto, ingestor: MqttIngestor, tmp_path: Path
) -> None:
    """A camera re-sending the same frame of a static scene with a later `ts`: two readings;
    the same frame with the same `ts` again (a redelivery): no third."""
    from PIL import Image

    image = tmp_path / "still.jpg"
    Image.new("RGB", (64, 48), (40, 90, 30)).save(image, "JPEG")
    args = ["mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(mosquitto.port)]
    args += ["-q", "1", "-t", TOPIC.format("cam-1", "snapshot"), "-f", str(image)]
    for ts in ("2026-11-22T10:15:00+08:00", "2026-11-22T10:15:05+08:00", "1795313700"):
        subprocess.run([*args, "-D", "publish", "user-property", "ts", ts], check=True, timeout=10)
    wait_until(lambda: ingestor.stats.get("messages_committed") == 3, what="3 commits")
    stored = [r for _, r in ingestor.journal.readings()]
    assert [r.device_ts for r in stored] == [
        datetime(2026, 11, 22, 2, 15, tzinfo=UTC),
        datetime(2026, 11, 22, 2, 15, 5, tzinfo=UTC),
    ]
    assert all(r.payload.jpeg == image.read_bytes() for r in stored)
    assert ingestor.stats.get("duplicates") == 1


class SlowSubscribeProxy:
    """A TCP proxy in front of the broker that holds each SUBSCRIBE from the client for
    `delay_s` before passing it on: the window in which a broker has accepted a new session's
    connection but not yet its subscriptions, made wide enough to see."""

    SUBSCRIBE = 0x80

    def __init__(self, broker: Mosquitto, delay_s: float) -> None:
        self.broker, self.delay_s = broker, delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.broker.port))
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        buffer = b""
        try:
            while data := source.recv(65536):
                if not from_client:
                    sink.sendall(data)
                    continue
                buffer += data
                while (packet := _mqtt_packet(buffer)) is not None:
                    buffer = buffer[len(packet) :]
                    if packet[0] & 0xF0 == self.SUBSCRIBE:
                        self.held += 1
                        time.sleep(self.delay_s)
                    sink.sendall(packet)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def _mqtt_packet(buffer: bytes) -> bytes | None:
    """The first whole MQTT control packet in `buffer`, or None while it is incomplete."""
    length, shift, index = 0, 0, 1
    while True:
        if index >= len(buffer):
            return None
        byte = buffer[index]
        length |= (byte & 0x7F) << shift
        index += 1
        if not byte & 0x80:
            break
        shift += 7
    end = index + length
    return buffer[:end] if len(buffer) >= end else None


def test_start_returns_once_the_subscriptions_are_acknowledged(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A new box's first connection: `start()` returning means what is published from then on
    is ours. It used to return at CONNACK, before the broker had the subscriptions, and a reading
    published in that window went nowhere (the first of 3000 in a broker-restart test, about one
    run in thirty)."""
    proxy = SlowSubscribeProxy(mosquitto, delay_s=1.0)
    config = load_config(write_site(tmp_path, f"mqtt://127.0.0.1:{proxy.port}"))
    journal = Journal(config.storage.journal)
    consumer = MqttIngestor(config, journal)
    try:
        consumer.start(wait_s=10)
        assert proxy.held == 1 and consumer.subscribed.is_set()
        mosquitto_pub(mosquitto, TOPIC.format("gps-1", "gps"), gps_json(1))
        wait_until(lambda: journal.count() == 1, what="the reading published right after start")
    finally:
        consumer.stop()
        journal.close()
        proxy.close()
