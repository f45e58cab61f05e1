"""The `jt808` section (the JT/T 808 listener for vehicle terminals) and what a gps device with
`protocol: jt808` adds: its terminal phone number and named inputs."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

from ingest.config.common import Strict


class Protocol(StrEnum):
    MQTT = "mqtt"
    JT808 = "jt808"


_PHONE = re.compile(r"^\d{1,20}$")


def normalise_phone(value: str) -> str:
    """The terminal phone number as the header carries it (BCD[6] in 2013, BCD[10] in 2019),
    without the leading zeros that pad it: both editions name one terminal alike."""
    return value.lstrip("0") or "0"


def _phone(value: str) -> str:
    if not _PHONE.fullmatch(value):
        raise ValueError(
            "phone is the terminal phone number of JT/T 808: 1-20 digits (quote it in YAML so "
            "leading zeros stay)"
        )
    return value


Phone = Annotated[str, AfterValidator(_phone)]

_INPUT = re.compile(r"^(status|io|signal):(\d{1,2})$")
INPUT_SOURCES = {"status": 32, "io": 16, "signal": 32}
"""Where a named input lives: a bit of the location's status word, of the IO status item (0x2A)
or of the extended vehicle signal item (0x25); the value is how many bits each has."""


def _input(value: str) -> str:
    match = _INPUT.fullmatch(value)
    if match is None or int(match[2]) >= INPUT_SOURCES[match[1]]:
        raise ValueError(
            f"input {value!r}: expected status:N (0-31, the status word), io:N (0-15, IO item "
            "0x2A) or signal:N (0-31, vehicle signal item 0x25)"
        )
    return value


InputBit = Annotated[str, AfterValidator(_input)]


class Jt808(Strict):
    """`jt808:` in devices.yaml. Limits keep one bad terminal from disturbing the others."""

    host: str = "0.0.0.0"
    port: int = Field(7611, ge=0, le=65535)
    """0: any free port (tests)."""
    require_auth: bool = True
    """Locations only after the terminal authenticated (0x0102) on this connection."""
    max_frame_bytes: int = Field(4096, ge=64, le=1024 * 1024)
    """Largest escaped frame between two 0x7E; a longer one closes the connection."""
    max_message_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest message rebuilt from sub-packages."""
    max_connections: int = Field(2000, ge=1)
    max_connections_per_ip: int = Field(50, ge=1)
    idle_timeout_s: float = Field(180.0, gt=0)
    """A connection silent this long (no heartbeat) is closed."""
    frame_timeout_s: float = Field(10.0, gt=0)
    """A frame begun must end within this (a slowloris connection is closed)."""
    auth_timeout_s: float = Field(30.0, gt=0)
    """A connection must authenticate within this (with `require_auth`)."""
    subpackage_timeout_s: float = Field(60.0, gt=0)
    batch_size: int = Field(2000, ge=1, le=100_000)
    """Readings per journal transaction at most."""
