"""Publishing a scenario to a real Mosquitto, read back by paho and by mosquitto_sub."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.config import load_config
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.scenario import build_scenario
from streetwatch.scenario_jt808 import jt808_reports
from streetwatch.simulate import (
    BrokerUnreachable,
    publish_scenario,
    scenario_start,
    simulate,
)
from tests.conftest import REPO, write_site

PROBE = "probe/simulate"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class PahoSubscriber:
    def __init__(self, broker: Mosquitto) -> None:
        self.messages: list[tuple[str, bytes, dict[str, str], datetime]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="sim-test-sub", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("streetwatch/#", SubscribeOptions(qos=1))]
        )
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        props = dict(getattr(message.properties, "UserProperty", []) or [])
        self.messages.append((message.topic, message.payload, props, datetime.now(UTC)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class MosquittoSub:
    """mosquitto_sub printing one `topic length user-properties` line per message."""

    def __init__(self, broker: Mosquitto) -> None:
        args = ["mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(broker.port)]
        args += ["-q", "1", "-t", "streetwatch/#", "-t", PROBE, "-F", "%t %l %P"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        probe.connect("127.0.0.1", broker.port)
        probe.loop_start()
        try:
            deadline = time.monotonic() + 10
            while not any(line.startswith(PROBE) for line in self.lines):
                assert time.monotonic() < deadline, "mosquitto_sub did not subscribe"
                probe.publish(PROBE, b"hello", qos=1).wait_for_publish(2)
                time.sleep(0.1)
        finally:
            probe.disconnect()
            probe.loop_stop()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def received(self) -> list[tuple[str, int, str]]:
        out = []
        for line in self.lines:
            topic, length, props = line.split(" ", 2)
            if topic != PROBE:
                out.append((topic, int(length), props))
        return out

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)
        self.reader.join(5)


def test_publishes_everything_to_two_independent_subscribers(mosquitto: Mosquitto) -> None:
    config = load_config(REPO / "devices.yaml")
    duration, speed = 30.0, 30.0
    start = scenario_start(duration, speed)
    messages = build_scenario(config, duration_s=duration, seed=2, start=start, faults=True)
    paho_sub = PahoSubscriber(mosquitto)
    assert paho_sub.subscribed.wait(10)
    cli_sub = MosquittoSub(mosquitto)
    progress: list[int] = []
    try:
        report = publish_scenario(
            messages,
            url=mosquitto.url,
            client_id="sim-test-pub",
            speed=speed,
            on_progress=lambda sent, total: progress.append(sent),
        )
        wait_until(lambda: len(paho_sub.messages) >= len(messages), 15, "paho subscriber")
        wait_until(lambda: len(cli_sub.received()) >= len(messages), 15, "mosquitto_sub")
    finally:
        paho_sub.close()
        cli_sub.close()

    assert (report.sent, report.acked, report.failed) == (len(messages), len(messages), 0)
    assert report.elapsed_s >= messages[-1].at_s / speed
    assert progress[-1] == len(messages)

    sent = Counter((m.topic, m.payload) for m in messages)
    assert Counter((t, p) for t, p, _, _ in paho_sub.messages) == sent
    assert Counter((t, n) for t, n, _ in cli_sub.received()) == Counter(
        (m.topic, len(m.payload)) for m in messages
    )

    snapshots = {m.payload: dict(m.user_properties)["ts"] for m in messages if m.user_properties}
    assert snapshots
    for topic, payload, props, _ in paho_sub.messages:
        if topic.endswith("/snapshot"):
            assert props == {"ts": snapshots[payload]}
    cli_snapshots = [p for t, _, p in cli_sub.received() if t.endswith("/snapshot")]
    assert len(cli_snapshots) == len(snapshots)
    assert sorted(cli_snapshots) == sorted(f"ts:{ts}" for ts in snapshots.values())

    for topic, payload, _, received in paho_sub.messages:
        if payload.startswith(b"{") and not topic.endswith("/ghost-99/gps"):
            try:
                device_ts = datetime.fromisoformat(json.loads(payload)["ts"])
            except ValueError:
                continue
            assert device_ts <= received, "simulated time ran ahead of the wall clock"


def test_start_is_anchored_so_device_time_never_runs_ahead() -> None:
    now = datetime(2025, 5, 1, 2, 0, tzinfo=UTC)
    assert scenario_start(120, 1, now) == now
    assert scenario_start(120, 0.5, now) == now
    start = scenario_start(900, 30, now)
    assert (start - now).total_seconds() == pytest.approx(30 - 900)
    for at_s in (0, 450, 900):
        assert (start - now).total_seconds() + at_s <= at_s / 30


def test_unreachable_broker_raises() -> None:
    with pytest.raises(BrokerUnreachable, match="cannot connect"):
        publish_scenario([], url=f"mqtt://127.0.0.1:{free_port()}", client_id="x")


def test_cli_dry_run_lists_the_scenario() -> None:
    result = CliRunner().invoke(
        simulate, ["-c", str(REPO / "devices.yaml"), "--dry-run", "--duration", "20", "--faults"]
    )
    assert result.exit_code == 0, result.output
    lines = [line.split(" ") for line in result.stdout.splitlines()]
    site = load_config(REPO / "devices.yaml")
    expected, trucks = jt808_reports(
        site, build_scenario(site, duration_s=20, seed=1, start=datetime.now(UTC), faults=True)
    )  # the JT/T 808 truck's fixes go over TCP, not MQTT
    assert Counter(topic for _, topic, _ in lines) == Counter(m.topic for m in expected)
    assert f"{len(trucks)} JT/T 808 location reports" in result.stderr
    times = [float(at_s) for at_s, _, _ in lines]
    assert times == sorted(times) and times[0] >= 0 and times[-1] < 20
    assert sum(int(size) for _, _, size in lines) > 100_000
    assert "faults" in result.stderr


def test_cli_publishes_and_summarises(mosquitto: Mosquitto, tmp_path: Path) -> None:
    site = write_site(tmp_path, mosquitto.url)
    result = CliRunner().invoke(simulate, ["-c", str(site), "--duration", "10", "--speed", "20"])
    assert result.exit_code == 0, result.output
    summary = result.stdout.strip().splitlines()
    assert len(summary) == 1 and " 0 failed" in summary[0], summary


def test_cli_embedded_config_publishes_to_the_embedded_brokers_port(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    site = write_site(tmp_path, "embedded", embedded_port=mosquitto.port)
    args = ["-c", str(site), "--duration", "5", "--speed", "50"]
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 0, result.output
    assert f"mqtt://127.0.0.1:{mosquitto.port}" in result.output


def test_cli_unreachable_broker_is_one_line_and_non_zero(tmp_path: Path) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "streetwatch", "simulate", "--broker", url, "--duration", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "refused" in lines[0].lower(), proc.stderr
