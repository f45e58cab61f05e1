"""Decoding on the MQTT network thread: one message's topic, payload and properties in, its
readings, dead letters or case-system decision out (MqttIngestor, ingest/mqtt_consumer.py).

Within one read pass of the network thread (`start_pass` .. `end_pass`) the receive time is
shared, and so is each topic's decode context (its device, stream and limits): the bytes came
in on the same `recv`. What a topic is (a device's route, a decision topic) is cached across
passes for the topics of configured devices.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from paho.mqtt.properties import Properties

from ingest.config import SiteConfig
from ingest.decisions import BadDecision, DecisionMessage, case_of_topic, parse_decision
from ingest.decoders import decode
from ingest.decoders.base import (
    DecodeContext,
    DecodeError,
    DecoderState,
    PartialDecode,
    Reason,
    reading_key,
)
from ingest.journal import DeadLetter
from ingest.readings import Reading, Stream
from ingest.registry import DeviceRegistry, UnknownTopic

log = logging.getLogger("streetwatch.ingest")


class Undecodable(Exception):
    """A message that cannot be decoded at all, with its dead letter."""

    def __init__(self, letter: DeadLetter) -> None:
        self.letter = letter


DECISION = object()
"""Marks a topic of the case system's decisions in the topic cache."""
_TOPIC_CACHE = 4096


class _DeadLetterLog:
    """Log each dead letter with its reason, at most `per_minute` lines per reason."""

    def __init__(self, per_minute: int = 20) -> None:
        self.per_minute = per_minute
        self._window: dict[str, tuple[float, int]] = {}

    def __call__(self, letter: DeadLetter) -> None:
        now = time.monotonic()
        start, count = self._window.get(letter.reason, (now, 0))
        if now - start > 60:
            if count > self.per_minute:
                log.warning(
                    "%d more dead letters (%s) in the last minute",
                    count - self.per_minute,
                    letter.reason,
                )
            start, count = now, 0
        count += 1
        self._window[letter.reason] = (start, count)
        if count <= self.per_minute:
            log.warning("dead letter on %s: %s: %s", letter.topic, letter.reason, letter.detail)


class MessageDecoder:
    """Used by the network thread alone (NMEA's DecoderState is not shared)."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.registry = DeviceRegistry(config)
        self.limits = config.ingest
        self._topics: dict[bytes, object] = {}
        """Topic bytes -> its Route, DECISION, or None (not a device topic: dead-lettered)."""
        self._contexts: dict[bytes, tuple[DecodeContext, int]] = {}
        """Per read pass: a topic's decode context and its payload limit."""
        self._in_pass = False
        self._received_ts: datetime | None = None
        self._state = DecoderState()
        self._log_dead = _DeadLetterLog()

    def start_pass(self) -> None:
        self._in_pass = True
        self._received_ts = datetime.now(UTC)
        self._contexts.clear()

    def end_pass(self) -> None:
        self._in_pass = False
        self._received_ts = None

    def message(
        self, topic: bytes, payload: bytes, properties: Properties | None
    ) -> tuple[list[Reading], list[DeadLetter], list[DecisionMessage]]:
        """Readings, dead letters and decisions of one message (each list may be empty)."""
        received_ts = self._received_ts or datetime.now(UTC)
        route = self._topics.get(topic, self)
        if route is self:
            route = self.route_of(topic)
        if route is DECISION:
            decisions, dead = self.decision_of(topic.decode(), payload, properties, received_ts)
            return [], dead, decisions
        try:
            readings, dead = self.readings_of(topic, route, payload, properties, received_ts)
        except Undecodable as exc:
            return [], [exc.letter], []
        return readings, dead, []

    def route_of(self, topic: bytes) -> object:
        """What a topic is (cached): a device's Route, DECISION, or None."""
        try:
            text = topic.decode()
        except UnicodeDecodeError:
            return None
        if case_of_topic(self.config.site.id, text) is not None:
            route: object = DECISION
        else:
            try:
                route = self.registry.route(text)
            except UnknownTopic:
                return None  # not cached: a flood of made-up topics must not grow the cache
        if len(self._topics) >= _TOPIC_CACHE:
            self._topics.clear()
        self._topics[topic] = route
        return route

    def decision_of(
        self, topic: str, payload: bytes, properties: Properties | None, received_ts: datetime
    ) -> tuple[list[DecisionMessage], list[DeadLetter]]:
        """A decision message of the case system, or its dead letter."""
        case_id = case_of_topic(self.config.site.id, topic)
        assert case_id is not None
        props = properties
        user = tuple(getattr(props, "UserProperty", ()) or ()) if props is not None else ()
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        try:
            if len(payload) > self.limits.max_payload_bytes:
                raise BadDecision(Reason.OVERSIZED.value, f"{len(payload)} bytes")
            return [parse_decision(case_id, topic, payload, received_ts, user, correlation)], []
        except BadDecision as exc:
            return [], [self.dead(topic, payload, exc.reason, exc.detail, received_ts)]

    def readings_of(
        self,
        raw_topic: bytes,
        route: object,
        payload: bytes,
        properties: Properties | None,
        received_ts: datetime,
    ) -> tuple[list[Reading], list[DeadLetter]]:
        """Decode one message: its readings and the dead letters of its bad array elements. A
        message that cannot be decoded at all raises with its dead letter."""
        try:
            topic = raw_topic.decode()
        except UnicodeDecodeError:
            raise Undecodable(
                self.dead(
                    repr(raw_topic), payload, Reason.BAD_ENCODING, "topic is not UTF-8", received_ts
                )
            ) from None
        try:
            return self._decode(raw_topic, topic, route, payload, properties, received_ts), []
        except PartialDecode as exc:
            letters = [
                self.dead(
                    topic,
                    element.element,
                    element.reason,
                    element.detail,
                    received_ts,
                    key=reading_key(topic, payload, element.index),
                )
                for element in exc.rejected
            ]
            return exc.readings, letters
        except (DecodeError, UnknownTopic) as exc:
            raise Undecodable(
                self.dead(topic, payload, exc.reason, exc.detail, received_ts)
            ) from None
        except Exception as exc:  # a decoder bug must not stop ingestion
            log.exception("decoder failed on %s", topic)
            letter = self.dead(topic, payload, "internal_error", repr(exc)[:500], received_ts)
            raise Undecodable(letter) from None

    def _decode(
        self,
        raw_topic: bytes,
        topic: str,
        route: Any,
        payload: bytes,
        properties: Properties | None,
        received_ts: datetime,
    ) -> list[Reading]:
        if len(payload) > self.limits.max_snapshot_bytes:
            raise DecodeError(Reason.OVERSIZED, f"{len(payload)} bytes is over every limit")
        if route is None:
            self.registry.route(topic)  # raises UnknownTopic with the reason
        cached = self._contexts.get(raw_topic) if properties is None else None
        if cached is None:
            limit = (
                self.limits.max_snapshot_bytes
                if route.stream is Stream.SNAPSHOT
                else self.limits.max_payload_bytes
            )
            user_properties = ()
            if properties is not None and hasattr(properties, "UserProperty"):
                user_properties = tuple(properties.UserProperty)
            ctx = route.context(topic, received_ts, user_properties, self.limits)
            if ctx.fmt == "nmea":
                ctx = replace(ctx, state=self._state)
            if properties is None and self._in_pass:
                self._contexts[raw_topic] = (ctx, limit)
        else:
            ctx, limit = cached
        if len(payload) > limit:
            raise DecodeError(
                Reason.OVERSIZED, f"{len(payload)} bytes is over the {limit}-byte limit"
            )
        return decode(ctx, payload)

    def dead(
        self,
        topic: str,
        payload: bytes,
        reason: str,
        detail: str,
        received_ts: datetime,
        key: str | None = None,
    ) -> DeadLetter:
        """A dead letter to journal (counted by reason once the journal has stored it)."""
        letter = DeadLetter.of(
            topic,
            payload,
            str(reason),
            detail,
            received_ts,
            self.limits.dead_letter_payload_bytes,
            key,
        )
        self._log_dead(letter)
        return letter
