"""`broker: embedded`: the box runs its own broker, so a fresh machine needs no server.

The design named amqtt for this, in process; amqtt 0.12 speaks MQTT 3.1.1 only (its broker
refuses protocol level 5), and streetwatch's contracts are MQTT v5 (snapshot times in user
properties, session expiry, shared subscriptions). So the embedded broker is a Mosquitto child
process that streetwatch starts and stops itself, listening on loopback only, with its
persistence under the storage root so queued QoS 1 messages survive a restart.

The child must not outlive `run`: a `kill -9` of the parent would otherwise leave it holding
the port, and the restart (systemd's, after a crash) would be refused. The kernel sends it
SIGTERM when the thread that started it dies (`Mosquitto(tied=True)`, PR_SET_PDEATHSIG):
`run` and `make demo` start it from the main thread, which lives as long as the process.
As a second line, its pid file (`<storage root>/broker/mosquitto.pid`) is read at start: a
mosquitto still running on this storage root's config whose parent is gone is stopped first.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from ingest.config import SiteConfig
from streetwatch.localbroker import BrokerInUse, Mosquitto

log = logging.getLogger("streetwatch.embedded")


class EmbeddedBrokerError(RuntimeError):
    pass


def start_embedded_broker(config: SiteConfig) -> tuple[SiteConfig, Mosquitto]:
    """Start the broker; returns the config pointing at it, and the broker to stop."""
    port = config.broker.embedded_port
    advice = "set broker.embedded_port, or name the broker already there in broker.url"
    broker = Mosquitto(Path(config.storage.root) / "broker", port=port, tied=True)
    try:
        reclaimed = broker.reclaim_orphan()
    except BrokerInUse as exc:
        raise EmbeddedBrokerError(
            f"embedded broker on 127.0.0.1:{port}: {exc}; is another `streetwatch run` using "
            f"storage.root {config.storage.root}?"
        ) from None
    except (OSError, RuntimeError) as exc:
        raise EmbeddedBrokerError(
            f"embedded broker on 127.0.0.1:{port}: could not stop the one a previous run left "
            f"({exc}); stop it by hand"
        ) from None
    if reclaimed is not None:
        log.warning(
            "stopped the embedded broker (pid %d) a previous run of this site left running",
            reclaimed,
        )
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Mosquitto binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise EmbeddedBrokerError(
                f"embedded broker on 127.0.0.1:{port}: the port is taken ({exc.strerror}); {advice}"
            ) from None
    try:
        broker.start()
    except RuntimeError as exc:
        raise EmbeddedBrokerError(
            f"embedded broker on 127.0.0.1:{port} did not start ({exc}); {advice}"
        ) from None
    log.info("embedded broker (Mosquitto, loopback only) at %s", broker.url)
    broker_config = config.broker.model_copy(update={"url": broker.url})
    return config.model_copy(update={"broker": broker_config}), broker
