"""`streetwatch simulate`: publish a seeded scenario for the site to an MQTT broker, paced."""

from __future__ import annotations

import signal
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.config import SiteConfig
from ingest.yamlsource import ConfigError
from streetwatch.cliconfig import CONFIG_OPTION, load_or_fail
from streetwatch.scenario import SimMessage, build_scenario
from streetwatch.scenario_drone import publish_footage_telemetry
from streetwatch.scenario_jt808 import Player, jt808_reports

CONNECT_TIMEOUT_S = 10.0
MAX_INFLIGHT = 1000
PROGRESS_EVERY_S = 10.0
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 4
"""A lost broker is retried within a few seconds of its return (paho's default backs off to
two minutes); what was published meanwhile waits in paho and goes out on reconnect."""


class BrokerUnreachable(ConnectionError):
    """The broker could not be reached or refused the connection."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class PublishReport:
    sent: int
    acked: int
    failed: int
    elapsed_s: float
    stopped: bool = False


def broker_address(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of `mqtt://host:port` or `mqtts://host:port`."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ValueError(f"broker URL {url!r} is not mqtt://host:port or mqtts://host:port")
    tls = parts.scheme in ("mqtts", "ssl")
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


def scenario_start(duration_s: float, speed: float, now: datetime | None = None) -> datetime:
    """Where simulated time starts so that, published at `speed`, it never runs ahead of now."""
    now = now or datetime.now(UTC)
    return now + timedelta(seconds=min(0.0, duration_s / speed - duration_s))


class _Acks:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.acked = 0
        self.failed = 0
        self.connected = False
        self.refused: str | None = None

    def on_connect(self, client, userdata, flags, reason_code: ReasonCode, properties) -> None:
        with self.cond:
            if reason_code.is_failure:
                self.refused = f"broker refused the connection: {reason_code.getName()}"
            else:
                self.connected = True
            self.cond.notify_all()

    def on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self.cond:
            self.connected = False
            self.cond.notify_all()

    def on_publish(self, client, userdata, mid, reason_code: ReasonCode, properties) -> None:
        with self.cond:
            if reason_code.is_failure:
                self.failed += 1
            else:
                self.acked += 1
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout_s)


def _client(
    client_id: str, username: str | None, password: str | None, tls: TlsFiles | None
) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    client.max_queued_messages_set(0)
    if username is not None or password is not None:
        client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca) if tls.ca else None,
            certfile=str(tls.cert) if tls.cert else None,
            keyfile=str(tls.key) if tls.key else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if tls.insecure:
            client.tls_insecure_set(True)
    return client


def _properties(message: SimMessage) -> Properties | None:
    if not message.user_properties:
        return None
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = list(message.user_properties)
    return props


def publish_scenario(
    messages: Sequence[SimMessage],
    *,
    url: str,
    client_id: str,
    speed: float = 1.0,
    qos: int = 1,
    username: str | None = None,
    password: str | None = None,
    tls: TlsFiles | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    ack_timeout_s: float = 30.0,
) -> PublishReport:
    """Publish each message at `at_s / speed` after the start; wait for every PUBACK at the end.
    A broker lost mid-way is reconnected to; unacknowledged messages are resent then.

    Raises BrokerUnreachable when no connection is up within CONNECT_TIMEOUT_S. `on_progress`
    gets (sent, total) after every publish. Setting `stop` ends the run early.
    """
    if speed <= 0:
        raise ValueError(f"speed={speed} must be positive")
    host, port, url_tls = broker_address(url)
    if url_tls and tls is None:
        tls = TlsFiles()
    stop = stop or threading.Event()
    acks = _Acks()
    client = _client(client_id, username, password, tls)
    client.on_connect = acks.on_connect
    client.on_disconnect = acks.on_disconnect
    client.on_publish = acks.on_publish
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerUnreachable(f"cannot connect to {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        up = acks.wait(lambda: acks.connected or acks.refused is not None, CONNECT_TIMEOUT_S)
        if acks.refused is not None or not up:
            reason = acks.refused or f"no answer from {host}:{port} within {CONNECT_TIMEOUT_S} s"
            raise BrokerUnreachable(reason)
        return _pace(client, acks, messages, speed, qos, stop, on_progress, ack_timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()


def _pace(
    client: mqtt.Client,
    acks: _Acks,
    messages: Sequence[SimMessage],
    speed: float,
    qos: int,
    stop: threading.Event,
    on_progress: Callable[[int, int], None] | None,
    ack_timeout_s: float,
) -> PublishReport:
    started = time.monotonic()
    sent = lost = 0
    stopped = False
    for message in messages:
        delay = started + message.at_s / speed - time.monotonic()
        if (delay > 0 and stop.wait(delay)) or stop.is_set():
            stopped = True
            break
        if not acks.connected and not _resume_in_order(acks, sent, lost, qos, stop, ack_timeout_s):
            stopped = True
            break
        info = client.publish(
            message.topic, message.payload, qos=qos, properties=_properties(message)
        )
        sent += 1
        queued_for_reconnect = info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0
        if info.rc != mqtt.MQTT_ERR_SUCCESS and not queued_for_reconnect:
            lost += 1
        if on_progress is not None:
            on_progress(sent, len(messages))
    _await_acks(acks, sent, lost, ack_timeout_s)
    with acks.cond:
        acked = acks.acked
    return PublishReport(sent, acked, sent - acked, time.monotonic() - started, stopped)


def _resume_in_order(
    acks: _Acks, sent: int, lost: int, qos: int, stop: threading.Event, quiet_s: float
) -> bool:
    """The broker is lost: hold the street until it is back and everything handed to paho so far
    is acknowledged, so that subscribers get each device's messages in order. (Publishing
    meanwhile lets a new message overtake paho's resends of older ones at the reconnect: seen
    as thousands of readings arriving minutes of street time late.) False if `stop` is set."""
    while not stop.is_set():
        with acks.cond:
            up = acks.connected
        if up:
            if qos > 0:
                _await_acks(acks, sent, lost, quiet_s)
            return True
        acks.wait(lambda: acks.connected, 0.2)
    return False


def _await_acks(acks: _Acks, sent: int, lost: int, quiet_s: float) -> None:
    """Wait for every PUBACK for as long as they keep coming: after a broker outage paho resends
    its whole backlog at once and the broker may take a while to work through it. Only
    `quiet_s` without a single new answer ends the wait."""

    def answered() -> int:
        return acks.acked + acks.failed

    seen = -1
    while answered() + lost < sent:
        with acks.cond:
            now = answered()
        if now == seen:
            return
        seen = now
        acks.wait(lambda before=now: answered() + lost >= sent or answered() != before, quiet_s)


# ---- command line -------------------------------------------------------------------------


def _tls_of(config: SiteConfig) -> TlsFiles | None:
    tls = config.broker.tls
    if tls is None:
        return None
    return TlsFiles(tls.ca_file, tls.cert_file, tls.key_file, tls.insecure)


class _Progress:
    def __init__(self) -> None:
        self.last = time.monotonic()

    def __call__(self, sent: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            click.echo(f"simulate: {sent}/{total} messages sent", err=True)


def _on_sigint(stop: threading.Event) -> Callable[[], None]:
    """Route SIGINT/SIGTERM to `stop` while publishing; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())

    def undo() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return undo


@click.command("simulate")
@CONFIG_OPTION
@click.option("--broker", "broker_url", help="Broker URL (default: the config's).")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Simulated seconds.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Simulated seconds per wall-clock second.",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Random seed of the scenario: the same seed, config and duration give the same messages.",
)
@click.option("--faults/--no-faults", default=False, help="Mix in deliberately bad messages.")
@click.option("--dry-run", is_flag=True, help="Print `at_s topic bytes` lines instead.")
def simulate(
    config_path: Path,
    broker_url: str | None,
    duration: float,
    speed: float,
    seed: int,
    faults: bool,
    dry_run: bool,
) -> None:
    """Publish a realistic, seeded scenario for every device of the site."""
    config = load_or_fail(config_path)
    start = scenario_start(duration, speed)
    messages = build_scenario(config, duration_s=duration, seed=seed, start=start, faults=faults)
    messages, trucks = jt808_reports(config, messages)
    n_faults = sum(1 for m in messages if m.fault)
    if dry_run:
        for m in messages:
            click.echo(f"{m.at_s:.3f} {m.topic} {len(m.payload)}")
        click.echo(
            f"simulate: {len(messages)} messages ({n_faults} faults) from "
            f"{len(config.devices)} devices over {duration:g} s, seed {seed} (dry run)",
            err=True,
        )
        if trucks:
            click.echo(f"simulate: {len(trucks)} JT/T 808 location reports (dry run)", err=True)
        return
    url = broker_url or config.broker.connect_url
    try:
        broker_address(url)
        username, password = config.broker.credentials()
    except ConfigError as exc:
        raise click.ClickException("; ".join(exc.problems)) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    undo = _on_sigint(stop)
    player = Player(config, trucks, speed=speed, stop=stop).start() if trucks else None
    try:
        footage = publish_footage_telemetry(
            config,
            url,
            duration / speed,
            stop,
            client_id=f"{config.broker.client_id}-footage",
            username=username,
            password=password,
            tls=_tls_of(config),
        )
        report = publish_scenario(
            messages,
            url=url,
            client_id=f"{config.broker.client_id}-simulate",
            speed=speed,
            username=username,
            password=password,
            tls=_tls_of(config),
            stop=stop,
            on_progress=_Progress(),
        )
        if footage is not None:
            footage.join()
    except BrokerUnreachable as exc:
        stop.set()
        raise click.ClickException(f"{url}: {exc}") from None
    finally:
        if player is not None:
            player.join()
        undo()
    if player is not None:
        click.echo(f"simulate: {player.summary()}")
    click.echo(
        f"simulate: sent {report.sent}/{len(messages)} messages ({n_faults} faults) to {url} "
        f"in {report.elapsed_s:.1f} s: {report.acked} acked, {report.failed} failed"
        + (" (stopped)" if report.stopped else "")
    )
    if report.failed:
        raise click.ClickException(f"{report.failed} messages were not acknowledged by {url}")
    if report.stopped:
        raise click.exceptions.Exit(130)
