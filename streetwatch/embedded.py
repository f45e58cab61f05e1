"""`broker: embedded`: the box runs its own broker, so a fresh machine needs no server.

The design named amqtt for this, in process; amqtt 0.12 speaks MQTT 3.1.1 only (its broker
refuses protocol level 5), and streetwatch's contracts are MQTT v5 (snapshot times in user
properties, session expiry, shared subscriptions). So the embedded broker is a Mosquitto child
process that streetwatch starts and stops itself, listening on loopback only, with its
persistence under the storage root so queued QoS 1 messages survive a restart.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from ingest.config import SiteConfig
from streetwatch.localbroker import Mosquitto

log = logging.getLogger("streetwatch.embedded")


class EmbeddedBrokerError(RuntimeError):
    pass


def start_embedded_broker(config: SiteConfig) -> tuple[SiteConfig, Mosquitto]:
    """Start the broker; returns the config pointing at it, and the broker to stop."""
    port = config.broker.embedded_port
    advice = "set broker.embedded_port, or name the broker already there in broker.url"
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Mosquitto binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise EmbeddedBrokerError(
                f"embedded broker on 127.0.0.1:{port}: the port is taken ({exc.strerror}); {advice}"
            ) from None
    broker = Mosquitto(Path(config.storage.root) / "broker", port=port)
    try:
        broker.start()
    except RuntimeError as exc:
        raise EmbeddedBrokerError(
            f"embedded broker on 127.0.0.1:{port} did not start ({exc}); {advice}"
        ) from None
    log.info("embedded broker (Mosquitto, loopback only) at %s", broker.url)
    broker_config = config.broker.model_copy(update={"url": broker.url})
    return config.model_copy(update={"broker": broker_config}), broker
