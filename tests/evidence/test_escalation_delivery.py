"""Escalations go to a real HTTP case system (tests/runkit.py) and a real Mosquitto through the
case feed: once per level, after a failed first try too, never for a case the box cleared, and
not again after a restart of the feed."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore, State
from evidence.feed import CaseFeed
from evidence.keys import Signer
from evidence.service import EvidenceService
from tests.evidence.evidence_support import make_violation, site_config
from tests.evidence.test_case_feed import START
from tests.runkit import CaseSystem


def _wait(done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_overdue_case_escalates_once_per_level_on_http_and_mqtt(
    tmp_path: Path, ring, mosquitto
) -> None:
    system = CaseSystem(fail_first=0, fail_escalations_first=1)
    config = site_config(
        tmp_path,
        feed={
            "http": {"url": system.url, "media": "upload"},
            "mqtt": {"topic": "streetwatch/{site}/cases"},
            "retry": {"min_delay_s": 0.05, "max_delay_s": 0.2},
        },
    )
    config = config.model_copy(
        update={"broker": config.broker.model_copy(update={"url": mosquitto.url})}
    )
    store = CaseStore(tmp_path / "var/cases.sqlite")
    builder = EvidenceBuilder(config, Signer.load_or_create(tmp_path / "key.pem"), ring, None)
    service = EvidenceService(builder, store)
    overdue, cleared = (
        service.handle(
            dataclasses.replace(
                make_violation(START, i, dwell_s=2.0, pre_s=0.5, post_s=0.5), escalate=(1.0, 2.0)
            )
        )
        for i in range(2)
    )
    store.clear(cleared.case_id, cleared.opened_at + timedelta(minutes=4))

    received: list[tuple[str, dict]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda _c, _u, m: received.append((m.topic, json.loads(m.payload)))
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("streetwatch/test-site/cases/+/escalation", qos=1)
    sub.loop_start()
    feed = CaseFeed(config, store)
    try:
        assert subscribed.wait(30), "no SUBACK from mosquitto"
        feed.start()
        _wait(lambda: all(c.state is State.ACKNOWLEDGED for c in store.list()), "acknowledged")

        opened = overdue.opened_at
        assert service.tick(opened + timedelta(minutes=14))[0] == []  # before the deadline
        first = service.tick(opened + timedelta(minutes=16))[0]
        assert [c.case_id for c in first] == [overdue.case_id]
        feed.wake()
        key1 = f"{overdue.case_id}/escalation/1"
        _wait(lambda: key1 in system.escalations, f"level 1: {feed.escalation_outbox()}")
        second = service.tick(opened + timedelta(minutes=31))[0]
        assert [c.case_id for c in second] == [overdue.case_id]
        assert service.tick(opened + timedelta(minutes=45))[0] == []  # every level passed
        feed.wake()
        key2 = f"{overdue.case_id}/escalation/2"
        _wait(lambda: key2 in system.escalations, f"level 2: {feed.escalation_outbox()}")
        _wait(
            lambda: all(r["state"] == "delivered" for r in feed.escalation_outbox()),
            f"all delivered: {feed.escalation_outbox()}",
        )
        _wait(lambda: {m["level"] for _, m in received} == {1, 2}, f"mqtt: {received}")
    finally:
        feed.close()
        sub.loop_stop()
        sub.disconnect()

    assert set(system.escalations) == {key1, key2}
    assert system.escalation_requests == 3  # the first try failed (503) and was retried
    assert not system.escalation_repeats
    body = system.escalations[key1]
    assert body["path"] == f"/cases/{overdue.case_id}/escalations"
    assert body["type"] == "escalation" and body["case_id"] == overdue.case_id
    assert body["level"] == 1 and body["of"] == 2 and body["state"] == "acknowledged"
    assert body["overdue_s"] == 60.0 and body["deadline"] == overdue.deadline.isoformat()
    assert {t for t, _ in received} == {f"streetwatch/test-site/cases/{overdue.case_id}/escalation"}
    assert {m["idempotency_key"] for _, m in received} == {key1, key2}
    assert all(cleared.case_id not in key for key in system.escalations)
    assert store.get(cleared.case_id).escalation_level == 0

    # a restarted feed neither loses nor repeats one
    again = CaseFeed(config, store)
    again.drain_once()
    again.close()
    assert system.escalation_requests == 3
    system.close()


def test_escalation_waits_for_the_case_itself(tmp_path: Path, ring) -> None:
    """The case system hears of an escalation only after it took the case."""
    system = CaseSystem(fail_first=0)
    system.down = True
    config = site_config(
        tmp_path,
        feed={
            "http": {"url": system.url, "media": "upload"},
            "retry": {"min_delay_s": 0.01, "max_delay_s": 0.05},
        },
    )
    store = CaseStore(tmp_path / "var/cases.sqlite")
    builder = EvidenceBuilder(config, Signer.load_or_create(tmp_path / "key.pem"), ring, None)
    service = EvidenceService(builder, store)
    case = service.handle(make_violation(START, 0, dwell_s=2.0, pre_s=0.5, post_s=0.5))
    feed = CaseFeed(config, store)
    try:
        feed.drain_once()
        assert service.tick(case.opened_at + timedelta(minutes=16))[0]
        for _ in range(3):
            feed.drain_once()
        assert system.escalation_requests == 0
        assert [r["state"] for r in feed.escalation_outbox()] == ["pending"]
        system.down = False
        deadline = time.monotonic() + 20
        while not system.escalations:
            assert time.monotonic() < deadline, feed.escalation_outbox()
            feed.drain_once()
            time.sleep(0.05)
    finally:
        feed.close()
        system.close()
    assert list(system.escalations) == [f"{case.case_id}/escalation/1"]
    assert store.get(case.case_id).state is State.ACKNOWLEDGED
