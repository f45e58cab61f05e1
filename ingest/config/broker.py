"""The `broker` section: where the MQTT broker is, how to reach it, and this worker's share."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ingest.config.common import SafeId, Strict
from ingest.secrets import SecretError, read_secret
from ingest.yamlsource import ConfigError


class Tls(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    """Skip hostname verification. For lab brokers with self-signed certificates only."""

    @model_validator(mode="after")
    def _pairs(self) -> Tls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate and its key)")
        return self


class Reconnect(Strict):
    min_delay_s: float = Field(1.0, gt=0, allow_inf_nan=False)
    max_delay_s: float = Field(60.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Reconnect:
        if self.min_delay_s > self.max_delay_s:
            raise ValueError("min_delay_s is larger than max_delay_s")
        return self


class Partition(Strict):
    """This worker's share of the site's devices when several workers split one site."""

    index: int = Field(ge=0)
    count: int = Field(ge=1, le=1024)

    @model_validator(mode="after")
    def _index_below_count(self) -> Partition:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count} (0-based)")
        return self

    def owns(self, device_id: str) -> bool:
        """Stable across processes and restarts (CRC-32 of the id, not Python's hash)."""
        return zlib.crc32(device_id.encode()) % self.count == self.index


class Broker(Strict):
    url: str = "mqtt://127.0.0.1:1883"
    """`mqtt://host:port`, `mqtts://host:port` (TLS), or `embedded` for the in-process broker."""
    client_id: SafeId = "streetwatch"
    username_env: str | None = None
    password_env: str | None = None
    tls: Tls | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    """How long the broker keeps our subscriptions and queued QoS 1 messages while we are away."""
    shared_group: SafeId | None = None
    """Join an MQTT v5 shared subscription group (`$share/<group>/...`) to split load."""
    receive_maximum: int = Field(1000, ge=1, le=65535)
    reconnect: Reconnect = Reconnect()
    embedded_port: int = Field(11883, ge=1, le=65535)
    """With `url: embedded`: the loopback port of the broker `streetwatch run` starts itself."""
    partition: Partition | None = None
    """Split the site by device: this worker subscribes to, and runs the cameras of, only the
    devices it owns, so every device's whole stream reaches one worker's detectors."""

    username: Any = Field(None, exclude=True, repr=False)
    password: Any = Field(None, exclude=True, repr=False)

    @field_validator("username", "password")
    @classmethod
    def _no_secrets_in_file(cls, value: Any, info: ValidationInfo) -> None:
        if value is not None:
            raise ValueError(
                f"secrets are not read from the file; export the {info.field_name} in an "
                f"environment variable and name that variable in '{info.field_name}_env'"
            )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value == "embedded":
            return value
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "credentials are not read from the url; name environment variables in "
                "username_env and password_env"
            )
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError("expected 'embedded' or mqtt://host:port or mqtts://host:port")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("port is not a number in 0-65535") from None
        return value

    @model_validator(mode="after")
    def _one_way_to_split(self) -> Broker:
        if self.partition is not None and self.shared_group is not None:
            raise ValueError(
                "shared_group and partition both split the load; choose one (partition keeps "
                "each device's stream on one worker, which the detectors need)"
            )
        return self

    def owns(self, device_id: str) -> bool:
        return self.partition is None or self.partition.owns(device_id)

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"

    @property
    def uses_tls(self) -> bool:
        return self.tls is not None or urlsplit(self.url).scheme in ("mqtts", "ssl")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        if self.embedded:
            return self.embedded_port
        parts = urlsplit(self.url)
        return parts.port or (8883 if self.uses_tls else 1883)

    @property
    def connect_url(self) -> str:
        """Where clients connect: the url, or the embedded broker's loopback address."""
        return f"mqtt://127.0.0.1:{self.embedded_port}" if self.embedded else self.url

    def credentials(self) -> tuple[str | None, str | None]:
        """Username and password from the environment; a named but unset variable is an error."""
        values = []
        for name in (self.username_env, self.password_env):
            if name is None:
                values.append(None)
                continue
            try:
                value = read_secret(name)
            except SecretError as exc:
                raise ConfigError([f"broker: {exc}"]) from None
            if value is None:
                raise ConfigError([f"broker: environment variable {name} is named but not set"])
            values.append(value)
        return values[0], values[1]
