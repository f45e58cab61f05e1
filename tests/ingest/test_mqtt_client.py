"""IngestClient (ingest/mqtt_client.py) against a real Mosquitto: raw publishes, paho's own path
for messages with properties, whole read passes, and PUBACKs in one write that the broker takes
(what is acknowledged is not redelivered to the persistent session; what is not, is)."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt_client import IngestClient
from streetwatch.localbroker import Mosquitto
from tests.ingest.test_mqtt_consumer import wait_until

TOPIC = "streetwatch/test-site/gps-1/gps"


class Receiver:
    def __init__(self, broker: Mosquitto) -> None:
        self.raw: list[tuple[bytes, int, int, bytes]] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.passes = 0
        self.subscribed = threading.Event()
        client = IngestClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id="raw-receiver",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.on_raw_publish = lambda *message: self.raw.append(message)
        client.on_message = lambda _c, _u, message: self.messages.append(message)
        client.on_read_end = self._pass
        client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=1)
        client.on_subscribe = lambda *_: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
        client.loop_start()
        assert self.subscribed.wait(10)
        self.client = client

    def _pass(self) -> None:
        self.passes += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_raw_publishes_properties_and_acks_many(mosquitto: Mosquitto) -> None:
    receiver = Receiver(mosquitto)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("ts", "1795380000")
    infos = [publisher.publish(TOPIC, f"fix {i}", qos=1) for i in range(600)]
    infos.append(publisher.publish(TOPIC, "with properties", qos=1, properties=props))
    infos.append(publisher.publish(TOPIC, "at most once", qos=0))
    wait_until(lambda: all(i.is_published() for i in infos), what="publisher acks")
    wait_until(lambda: len(receiver.raw) + len(receiver.messages) == 602, what="602 messages")

    assert [payload for _, _, qos, payload in receiver.raw if qos == 1] == [
        f"fix {i}".encode() for i in range(600)
    ]
    assert {topic for topic, *_ in receiver.raw} == {TOPIC.encode()}
    assert [(mid, payload) for _, mid, qos, payload in receiver.raw if qos == 0] == [
        (0, b"at most once")
    ]
    qos1 = [mid for _, mid, qos, _ in receiver.raw if qos == 1]
    assert len(set(qos1)) == 600 and all(mid > 0 for mid in qos1)
    [message] = receiver.messages  # properties: paho's own path, with its properties
    assert message.payload == b"with properties" and message.properties.UserProperty == [
        ("ts", "1795380000")
    ]
    assert receiver.passes < 602, "several packets a read pass"

    # acknowledge the first 400 and the one with properties in one write, then come back
    receiver.client.ack_many([*qos1[:400], message.mid])
    wait_until(lambda: not receiver.client._out_packet, what="the acks written")
    receiver.close()
    # the broker reads a connection's bytes in order: once it has seen this one end, it has
    # taken the acks before it. Reconnecting sooner races them: the session takeover may close
    # the old socket with the acks still unread, and all 600 come back.
    wait_until(
        lambda: any(
            f"Client raw-receiver {end}" in mosquitto.log()
            for end in ("disconnected", "closed its connection")
        ),
        what="the broker to see the first connection end",
    )
    again = Receiver(mosquitto)
    try:
        wait_until(lambda: len(again.raw) == 200, what="the 200 unacknowledged, redelivered")
        assert [payload for *_, payload in again.raw] == [
            f"fix {i}".encode() for i in range(400, 600)
        ]
        assert not again.messages
    finally:
        again.close()
        publisher.disconnect()
        publisher.loop_stop()
