"""Building blocks shared by the sections of devices.yaml: strict models, safe ids, finite
numbers, environment-variable names and MQTT topic checks."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_SAFE_ID = re.compile(SAFE_ID)


def _safe_id(value: str) -> str:
    if not _SAFE_ID.fullmatch(value):
        raise ValueError(
            "ids are 1-64 letters, digits, '-' or '_', starting with a letter or digit "
            "(they become file names and topic levels)"
        )
    return value


SafeId = Annotated[str, AfterValidator(_safe_id)]
"""Ids that end up in file paths and topics: no '/', '.', '..', spaces, '+', '#'."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Finite = Annotated[float, Field(allow_inf_nan=False)]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_WILDCARD = re.compile(r"[+#]")


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching (`+` one level, `#` the rest), as the broker does it."""
    want, have = pattern.split("/"), topic.split("/")
    for index, level in enumerate(want):
        if level == "#":
            return True
        if index >= len(have) or (level != "+" and level != have[index]):
            return False
    return len(want) == len(have)


def _check_publish_topic(value: str) -> None:
    """A topic we publish on: a name, never a filter."""
    if not value or "\0" in value or len(value.encode()) > 1024:
        raise ValueError("topic must be 1-1024 bytes without NUL")
    if _WILDCARD.search(value):
        raise ValueError(
            f"topic {value!r} contains an MQTT wildcard ('+' or '#'): a publish topic is one "
            "exact topic name, not a filter"
        )
    if value.startswith("$"):
        raise ValueError("topics starting with '$' are reserved by the broker")
