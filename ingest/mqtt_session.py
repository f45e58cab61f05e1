"""How every streetwatch MQTT client reaches the site's broker: credentials from the
environment, TLS with the configured CA and client certificate, and the reconnect backoff."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from ingest.config import Broker


def apply_broker_settings(client: mqtt.Client, broker: Broker) -> mqtt.Client:
    client.reconnect_delay_set(broker.reconnect.min_delay_s, broker.reconnect.max_delay_s)
    username, password = broker.credentials()
    if username is not None or password is not None:
        client.username_pw_set(username, password)
    if broker.uses_tls:
        tls = broker.tls
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
            certfile=str(tls.cert_file) if tls and tls.cert_file else None,
            keyfile=str(tls.key_file) if tls and tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if tls and tls.insecure:
            client.tls_insecure_set(True)
    return client
