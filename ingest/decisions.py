"""Decisions of the case system over MQTT: `streetwatch/{site}/cases/{case_id}/decision`.

The ingestor journals a decision message like a reading, before its ack; the pipeline applies
it to the case store later (`evidence.decisions`). Here only what ingest can judge on its own:
the topic names a case, the payload is a JSON object naming a known event, and the message has
an idempotency key: `key` in the body, else the MQTT v5 user property `key` (or
`Idempotency-Key`), else its correlation data, else a hash of topic and payload (a broker's
redelivery is then the same decision). Anything else is a dead letter with its reason.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

EVENTS = ("confirmed", "rejected", "notified", "rectified", "closed", "reopened")
"""The decisions the case system may report (and an operator may record)."""

CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
"""What a case id looks like (`evidence.package.case_id_of`); never a path."""

MAX_KEY = 200
KEY_PROPERTIES = ("key", "Idempotency-Key", "idempotency-key")

NOT_JSON = "not_json"
WRONG_TYPE = "wrong_type"
UNKNOWN_EVENT = "unknown_event"
BAD_CASE_ID = "bad_case_id"
BAD_KEY = "bad_key"


class BadDecision(ValueError):
    """A decision message that cannot be journaled: `reason` (a dead letter's counter key)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DecisionMessage:
    key: str
    case_id: str
    topic: str
    body: dict[str, Any]
    """The payload's JSON object without `key`."""
    received_ts: datetime


def decision_filter(site_id: str) -> str:
    return f"streetwatch/{site_id}/cases/+/decision"


def case_of_topic(site_id: str, topic: str) -> str | None:
    """The case id a decision topic names; None for any other topic."""
    prefix, suffix = f"streetwatch/{site_id}/cases/", "/decision"
    if not (topic.startswith(prefix) and topic.endswith(suffix)):
        return None
    middle = topic[len(prefix) : -len(suffix)]
    return None if "/" in middle else middle


def parse_decision(
    case_id: str,
    topic: str,
    payload: bytes,
    received_ts: datetime,
    user_properties: tuple[tuple[str, str], ...] = (),
    correlation: bytes | None = None,
) -> DecisionMessage:
    if not CASE_ID.fullmatch(case_id):
        raise BadDecision(BAD_CASE_ID, f"{case_id[:80]!r} is not a case id")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadDecision(NOT_JSON, str(exc)[:200]) from None
    if not isinstance(body, dict):
        raise BadDecision(WRONG_TYPE, f"a decision is a JSON object, not {type(body).__name__}")
    event = body.get("event")
    if event not in EVENTS:
        raise BadDecision(UNKNOWN_EVENT, f"event {event!r} is none of {', '.join(EVENTS)}")
    key = body.pop("key", None)
    if key is None:
        props = dict(user_properties)
        key = next((props[name] for name in KEY_PROPERTIES if name in props), None)
    if key is None and correlation:
        key = correlation.decode("utf-8", "replace")
    if key is None:
        key = "mqtt-" + hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise BadDecision(BAD_KEY, f"the idempotency key must be 1 to {MAX_KEY} characters")
    return DecisionMessage(key, case_id, topic, body, received_ts)
