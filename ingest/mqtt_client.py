"""paho's Client tuned for a consumer that receives a flood of small QoS 1 messages.

Each tuning keeps paho's own connection, session, keep-alive and reconnect handling; they touch
only the per-message receive path, which is most of a busy consumer's CPU (profiled with
py-spy: bench/ingest.py and the README's performance section):

- `_BufferedSocket`: paho reads each packet with three or more `recv` calls (command byte,
  length bytes, body); here the socket is read 64 KiB at a time.
- `loop_read`: paho 2 handles one packet per `select()` whatever `max_packets` says; here every
  packet already buffered is handled in one pass (as Home Assistant's MQTT client does), framed
  by `on_read_start` / `on_read_end` so the consumer can hand a whole burst over at once.
- `_handle_publish`: a QoS 0/1 PUBLISH without properties goes to `on_raw_publish(topic, mid,
  qos, payload)` as bytes, without the MQTTMessage, its Condition and an empty Properties
  object paho builds for every message; anything else (properties, QoS 2, an odd packet) takes
  paho's own path to `on_message`.
- `ack_many`: the PUBACKs of a committed batch go out as one write instead of one per message
  (4 bytes each: MQTT 5 lets a success PUBACK omit its reason code and properties, which is
  what paho's own `ack` sends too).

These use paho 2.x internals (`_packet_read`, `_handle_publish`, `_packet_queue`,
`_loop_rc_handle`); tests/ingest/test_mqtt_client.py pins their behaviour.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

RawPublish = Callable[[bytes, int, int, bytes], None]
"""(topic bytes, packet id, QoS, payload bytes) of one PUBLISH without properties."""

MAX_PACKETS_PER_READ = 2000
"""Packets handled in one `loop_read` before paho's loop gets to write and check keep-alive."""

_PUBACK = struct.Struct("!BBH")
_PUBACK_COMMAND = 0x40


class _BufferedSocket:
    """Reads the socket 64 KiB at a time and hands paho the few bytes it asks for.

    `pending()` tells paho's loop that buffered bytes are waiting, as it already does for TLS
    sockets.
    """

    __slots__ = ("_data", "_pos", "_sock")

    def __init__(self, sock) -> None:
        self._sock = sock
        self._data = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._data):
            self._data = self._sock.recv(65536)
            self._pos = 0
            if not self._data:
                return b""
        out = self._data[self._pos : self._pos + size]
        self._pos += len(out)
        return out

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._data) - self._pos + inner

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class IngestClient(mqtt.Client):
    """A paho Client with the receive path above. Without `on_raw_publish` every message goes
    to `on_message` as usual."""

    on_raw_publish: RawPublish | None = None
    on_read_start: Callable[[], None] | None = None
    on_read_end: Callable[[], None] | None = None

    def _create_socket(self):
        return _BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Handle every packet already received (up to MAX_PACKETS_PER_READ)."""
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        start, end = self.on_read_start, self.on_read_end
        if start is not None:
            start()
        try:
            for _ in range(MAX_PACKETS_PER_READ):
                rc = self._packet_read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    break
                sock = self._sock
                if sock is None:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                if not sock.pending():
                    break
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            if end is not None:
                end()

    def _handle_publish(self) -> MQTTErrorCode:
        raw = self.on_raw_publish
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if raw is None or qos > 1 or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        size = len(packet)
        topic_end = 2 + ((packet[0] << 8) | packet[1]) if size >= 2 else 2
        pos = topic_end + 2 if qos else topic_end
        if topic_end == 2 or size <= pos or packet[pos] != 0:
            return super()._handle_publish()  # properties, a topic alias, or malformed
        mid = (packet[topic_end] << 8) | packet[topic_end + 1] if qos else 0
        raw(bytes(packet[2:topic_end]), mid, qos, bytes(packet[pos + 1 :]))
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledge these QoS 1 messages (manual_ack) in one write, in this order."""
        blob = b"".join([_PUBACK.pack(_PUBACK_COMMAND, 2, mid) for mid in mids])
        if blob:
            self._packet_queue(_PUBACK_COMMAND, blob, 0, 0)
