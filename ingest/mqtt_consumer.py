"""MQTT v5 ingestion: QoS 1, persistent session, and the ack only after the journal commit.

Flow: paho's network thread (IngestClient, ingest/mqtt_client.py) reads every packet already
received in one pass and decodes each message into readings (or a dead letter:
ingest/mqtt_decode.py); at the end of
the pass it hands the whole burst to a writer thread in one step. The writer commits what is
queued to the journal, one transaction per batch, and only then sends the batch's PUBACKs, in
one write (paho's manual ack). (Decoding in the writer thread instead was measured at half the
throughput: the two threads then fight over the GIL.) A crash before the commit means no ack,
so the broker redelivers the message when we reconnect (the session outlives us), and the keyed
journal stores it once. Within a pass, the decode context of a topic (its device, stream and
limits) and the receive time are shared: the bytes came in on the same `recv`.

A message whose JSON array has some bad elements keeps its good readings and dead-letters each
bad element alone (with its index), all in the same commit before the one ack. Dead letters are
counted by reason as the journal stores them, so a redelivery counts nothing twice. NMEA
devices are decoded with a DecoderState (each device's last RMC) kept for the consumer's life.
The case system's decisions (`streetwatch/{site}/cases/{case_id}/decision`, ingest/decisions.py)
are journaled the same way, in the same commit before the ack, and applied by the pipeline.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.config import SiteConfig
from ingest.decisions import DecisionMessage, decision_filter
from ingest.diskspace import DiskGuard
from ingest.journal import DeadLetter, Journal
from ingest.mqtt_client import IngestClient
from ingest.mqtt_decode import MessageDecoder
from ingest.mqtt_session import apply_broker_settings
from ingest.readings import Reading
from ingest.registry import DeviceRegistry
from ingest.stats import IngestStats

log = logging.getLogger("streetwatch.ingest")

BatchListener = Callable[[list[Reading]], None]


class BrokerRefused(ConnectionError):
    """The broker could not be reached or refused us (TLS, credentials, ACL)."""


@dataclass(slots=True)
class _Batch:
    """What the network thread hands the writer: messages of one connection, in order."""

    session: int
    """The connection they came on: a packet id means nothing on another one."""
    messages: int = 0
    readings: list[Reading] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    decisions: list[DecisionMessage] = field(default_factory=list)
    """Decisions of the case system (`streetwatch/{site}/cases/{case_id}/decision`)."""
    acks: list[int] = field(default_factory=list)
    """Packet ids of its QoS 1 messages, to acknowledge after the commit."""


class MqttIngestor:
    """Subscribes to the site's topics and journals every message before acknowledging it."""

    def __init__(
        self,
        config: SiteConfig,
        journal: Journal,
        *,
        stats: IngestStats | None = None,
        on_batch: BatchListener | None = None,
        client_id: str | None = None,
        disk: DiskGuard | None = None,
        decisions: bool = True,
    ) -> None:
        """`disk`: refuse journal writes (messages stay unacknowledged) while it is full.
        `decisions`: also hear the case system's decisions (one ingest worker of several)."""
        self.config = config
        self.journal = journal
        self.disk = disk
        self.stats = stats or IngestStats()
        self.on_batch = on_batch
        self.registry = DeviceRegistry(config)
        self.limits = config.ingest
        self.decoder = MessageDecoder(config)
        self.client_id = client_id or config.broker.client_id
        self.decisions = decisions
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        """The broker acknowledged this connection's subscriptions (SUBACK): from now on what is
        published reaches us. Set after `connected`, which alone says nothing of that: on a
        first connection a message published between CONNACK and SUBACK is not ours to get."""
        self.last_error: str | None = None
        self._refused = threading.Event()
        self._subscribing: dict[int, list[str]] = {}
        self._queue: list[_Batch] = []
        self._queued = 0
        """Messages in `_queue`."""
        self._cond = threading.Condition()
        self._batch: _Batch | None = None
        """The network thread's current read pass, handed over at its end."""
        self._reading = False
        self._stopping = False
        self._session = 0
        self._writer: threading.Thread | None = None
        self._client = self._make_client()

    def _make_client(self) -> IngestClient:
        broker = self.config.broker
        client = IngestClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        apply_broker_settings(client, broker)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_raw_publish = self._on_raw_publish
        client.on_read_start = self._read_start
        client.on_read_end = self._read_end
        return client

    # ---- life cycle -------------------------------------------------------------------

    def start(self, wait_s: float | None = 10.0) -> None:
        """Connect and start consuming. With `wait_s`, raise BrokerRefused if not up by then."""
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._writer.start()
        broker = self.config.broker
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = broker.session_expiry_s
        props.ReceiveMaximum = broker.receive_maximum
        target = {
            "host": broker.host,
            "port": broker.port,
            "keepalive": broker.keepalive_s,
            "clean_start": False,
            "properties": props,
        }
        try:
            self._client.connect(**target)
        except (OSError, ssl.SSLError) as exc:
            self.last_error = f"cannot connect to {broker.host}:{broker.port}: {exc}"
            log.error("%s; retrying with backoff", self.last_error)
            if isinstance(exc, ssl.SSLCertVerificationError):
                self._refused.set()  # permanent until the certificates change: fail start() now
            self._client.connect_async(**target)
        self._client.loop_start()
        if wait_s is not None:
            self.wait_connected(wait_s)

    def wait_connected(self, timeout_s: float) -> None:
        """Until connected and subscribed (SUBACK), or BrokerRefused."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.subscribed.wait(0.05):
                return
            if self._refused.is_set():
                break
        if self.connected.is_set() and self.last_error is None:
            raise BrokerRefused(
                f"connected, but the broker did not acknowledge the subscriptions within "
                f"{timeout_s} s"
            )
        raise BrokerRefused(self.last_error or f"no connection to the broker within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Commit and acknowledge what was received, then disconnect."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join(timeout_s)
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    # ---- paho callbacks (network thread) ----------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code: ReasonCode, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code.getName()}"
            log.error(
                "%s (client id %s at %s); check credentials, TLS and ACL",
                self.last_error,
                self.client_id,
                self.config.broker.url,
            )
            self.stats.inc("connect_refused")
            self._refused.set()
            return
        self._refused.clear()
        self.last_error = None
        self.stats.inc("connects")
        filters = self.registry.subscriptions(self.config.broker.shared_group)
        if self.decisions:
            filters.append(decision_filter(self.config.site.id))  # the case system's decisions
        self.subscribed.clear()
        if filters:
            _, mid = client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
            self._subscribing[mid] = filters
        else:
            log.warning("this worker's partition owns no device of the site: nothing to hear")
            self.subscribed.set()
        log.info(
            "connected to %s (session present: %s); subscribing to %s",
            self.config.broker.url,
            flags.session_present,
            ", ".join(filters),
        )
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        filters = self._subscribing.pop(mid, [])
        for index, code in enumerate(reason_codes):
            if code.is_failure:
                what = filters[index] if index < len(filters) else "?"
                if what == decision_filter(self.config.site.id):
                    log.warning(
                        "the broker does not let %s hear the case system's decisions on %s (%s):"
                        " they come over the HTTP API only",
                        self.client_id,
                        what,
                        code.getName(),
                    )
                    self.stats.inc("decisions_subscribe_refused")
                    continue
                self.last_error = f"broker refused a subscription to {what}: {code.getName()}"
                log.error("%s (check the ACL for %s)", self.last_error, self.client_id)
                self.stats.inc("subscribe_refused")
        if not self._subscribing:
            self.subscribed.set()  # a refused filter is reported above; the others are live

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._session += 1  # what came before is acked on this connection never
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.subscribed.clear()
        self._subscribing.clear()
        if self._stopping:
            return
        self.stats.inc("disconnects")
        if was_connected or self._refused.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason_code)
            return
        hint = " (a TLS broker that wants a trusted client certificate does this)"
        self.last_error = (
            f"broker {self.config.broker.url} closed the connection before accepting it"
            f"{hint if self.config.broker.uses_tls else ''}"
        )
        log.error("%s; retrying with backoff", self.last_error)

    def _on_connect_fail(self, client, userdata) -> None:
        self.stats.inc("connect_failures")
        log.warning("reconnect to %s failed; retrying with backoff", self.config.broker.url)

    def _read_start(self) -> None:
        self._reading = True
        self.decoder.start_pass()

    def _read_end(self) -> None:
        self._reading = False
        self.decoder.end_pass()
        self._hand_over()

    def _hand_over(self) -> None:
        """Queue the current pass's messages for the writer (one lock for all of them)."""
        batch, self._batch = self._batch, None
        if batch is None or not batch.messages:
            return
        with self._cond:
            self._queue.append(batch)
            self._queued += batch.messages
            if self._queued >= self.limits.batch_size:
                self._cond.notify()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        """paho's path: a message with properties (or QoS 2)."""
        self._receive(message._topic, message.mid, message.qos, message.payload, message.properties)

    def _on_raw_publish(self, topic: bytes, mid: int, qos: int, payload: bytes) -> None:
        self._receive(topic, mid, qos, payload, None)

    def _receive(
        self, topic: bytes, mid: int, qos: int, payload: bytes, properties: Properties | None
    ) -> None:
        self.stats.received += 1
        batch = self._batch
        if batch is None or batch.session != self._session:
            self._hand_over()  # a reconnect inside a pass: the old connection's go first
            batch = self._batch = _Batch(self._session)
        readings, dead, decisions = self.decoder.message(topic, payload, properties)
        if readings:
            batch.readings += readings
        if dead:
            batch.dead += dead
        if decisions:
            batch.decisions += decisions
        elif not readings and not dead:
            self.stats.inc("messages_without_fix")  # e.g. NMEA from a receiver in a tunnel
        batch.messages += 1
        if qos:
            batch.acks.append(mid)
        if not self._reading:
            self._hand_over()

    # ---- writer thread ----------------------------------------------------------------

    def _write_loop(self) -> None:
        interval = self.limits.flush_interval_ms / 1000
        while True:
            with self._cond:
                deadline = time.monotonic() + interval
                while self._queued < self.limits.batch_size and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batches, self._queue, self._queued = self._queue, [], 0
                stopping = self._stopping
            if batches:
                self._commit(batches)
            if stopping and not batches:
                return

    def _commit(self, batches: list[_Batch]) -> None:
        if len(batches) == 1:
            readings, dead, decisions = batches[0].readings, batches[0].dead, batches[0].decisions
        else:
            readings = [r for b in batches for r in b.readings]
            dead = [letter for b in batches for letter in b.dead]
            decisions = [d for b in batches for d in b.decisions]
        messages = sum(b.messages for b in batches)
        while True:
            try:
                if self.disk is not None:
                    self.disk.check("ingest")
                result = self.journal.write(readings, dead, decisions)
                break
            except Exception as exc:
                if self.disk is not None and self.disk.failed("ingest", exc):
                    log.error(
                        "journal write failed, the storage disk is full (%s); holding %d"
                        " messages unacknowledged",
                        exc,
                        messages,
                    )
                else:
                    log.exception(
                        "journal write failed; holding %d messages unacknowledged", messages
                    )
                self.stats.inc("journal_errors")
                time.sleep(1.0)
        for batch in batches:
            if batch.session != self._session:
                # Received before a reconnect: the broker redelivers them (journaled once, by
                # key); acking their packet ids now could ack other messages of a broker that
                # restored an older session after a crash.
                self.stats.inc("acks_after_reconnect_skipped", len(batch.acks))
            elif batch.acks:
                self._client.ack_many(batch.acks)
        for reason, count in result.dead_reasons.items():
            self.stats.dead_letter(reason, count)
        self.stats.inc("messages_committed", messages)
        self.stats.inc("readings_journaled", result.inserted)
        self.stats.inc("readings_merged", result.merged)
        self.stats.inc("duplicates", result.duplicates)
        if decisions:
            self.stats.inc("decisions_journaled", result.decisions)
            self.stats.inc("decision_duplicates", len(decisions) - result.decisions)
        if self.on_batch is not None and readings:
            try:
                self.on_batch(readings)
            except Exception:
                log.exception("batch listener failed")
