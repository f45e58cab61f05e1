"""The case system's decisions over MQTT into a real `streetwatch run` on a real Mosquitto:
journaled before the ack, applied once per key (duplicates and redeliveries change nothing),
bad ones dead-lettered or refused with their reason, and a kill -9 between applying a decision
and settling it in the journal applies it once after the restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from evidence.cases import CaseStore, State
from ingest.config import load_config
from streetwatch.localbroker import Mosquitto
from tests.evidence.evidence_support import make_violation
from tests.runkit import RunProcess, demo_site, query, wait_until

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _seed(var: Path) -> list[str]:
    """Two cases the case system has acknowledged, in the run's case store."""
    store = CaseStore(var / "cases.sqlite")
    ids = []
    try:
        for n in range(2):
            case, _ = store.open(make_violation(START, n), START)
            for state in (State.EVIDENCE_COMPLETE, State.SUBMITTED, State.ACKNOWLEDGED):
                store.transition(case.case_id, state, START)
            ids.append(case.case_id)
    finally:
        store.close()
    return ids


def _publish(broker: Mosquitto, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
    """QoS 1, each acknowledged by the broker; `dict`: MQTT v5 user properties."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="casesys-test", protocol=mqtt.MQTTv5
    )
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for topic, payload, user in messages:
            props = Properties(PacketTypes.PUBLISH)
            for name, value in user.items():
                props.UserProperty = (name, value)
            info = client.publish(topic, payload, qos=1, properties=props)
            info.wait_for_publish(10)
            assert info.is_published(), topic
    finally:
        client.loop_stop()
        client.disconnect()


def _decisions(var: Path) -> list[tuple[str, str | None, str | None]]:
    return query(var / "journal.sqlite", "SELECT key, outcome, detail FROM decisions ORDER BY seq")


def _events(var: Path, case_id: str) -> list[str]:
    rows = query(
        var / "cases.sqlite",
        f"SELECT event FROM case_events WHERE case_id = '{case_id}' ORDER BY seq",
    )
    return [row[0] for row in rows]


def _state(var: Path, case_id: str) -> str:
    return query(var / "cases.sqlite", f"SELECT state FROM cases WHERE case_id = '{case_id}'")[0][0]


def test_decisions_over_mqtt_move_the_case_once(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config_path = demo_site(tmp_path)
    site = load_config(config_path).site.id
    var = tmp_path / "var"
    first, second = _seed(var)
    log = tmp_path / "run.log"

    def topic(case_id: str) -> str:
        return f"streetwatch/{site}/cases/{case_id}/decision"

    def body(**fields: object) -> bytes:
        return json.dumps(fields, ensure_ascii=False).encode()

    run = RunProcess(config_path, mosquitto, log)
    confirmed = body(event="confirmed", by="审核员", reason="clear", key="c-1")
    _publish(
        mosquitto,
        [
            (topic(first), confirmed, {}),
            (topic(first), confirmed, {}),  # the case system's retry
            (topic(first), confirmed, {}),
            # the key as a user property; the second is another request under the same key
            (topic(second), body(event="rectified"), {"key": "r-2"}),
            (topic(second), body(event="closed"), {"key": "r-2"}),
            (topic(second), body(event="reopened"), {"key": "o-2"}),  # not closed: impossible
            (topic("20261123-nobody"), body(event="closed", key="u-1"), {}),
            (topic(first), b"{not json", {}),
            (topic(first), body(event="approved", key="x-1"), {}),
            (topic(first), body(event="notified", key="n-0"), {}),  # without how: invalid
        ],
    )
    wait_until(
        lambda: len(_decisions(var)) == 6 and all(d[1] for d in _decisions(var)),
        60,
        "the journaled decisions to be settled",
    )
    settled = _decisions(var)
    assert [(key, outcome) for key, outcome, _ in settled if key == "r-2"] == [
        ("r-2", "applied"),
        ("r-2", "refused"),
    ]
    assert "key_reused" in settled[2][2]
    outcomes = {key: (outcome, detail) for key, outcome, detail in settled}
    assert outcomes["c-1"][0] == "applied"
    assert outcomes["o-2"] == ("refused", outcomes["o-2"][1])
    assert outcomes["o-2"][1].startswith("impossible: ")
    assert outcomes["u-1"][1].startswith("unknown_case: ")
    assert outcomes["n-0"][1].startswith("invalid: ")
    assert _state(var, first) == "confirmed" and _events(var, first).count("confirmed") == 1
    assert _state(var, second) == "rectified"
    letters = query(var / "journal.sqlite", "SELECT reason FROM dead_letters ORDER BY id")
    assert [r[0] for r in letters] == ["not_json", "unknown_event"]
    log_text = run.log_text()
    assert "refused (impossible)" in log_text and "refused (unknown_case)" in log_text
    run.terminate()

    # kill -9 after the decision reached the case store, before the journal settled it
    run = RunProcess(
        config_path, mosquitto, log, env={"STREETWATCH_FAILPOINTS": "decisions.applied=1"}
    )
    notified = body(event="notified", how="sms", at="2026-11-23T10:00:00+08:00", key="n-1")
    _publish(mosquitto, [(topic(first), notified, {})])
    assert run.wait_killed(60) != 0
    assert _state(var, first) == "notified"
    assert ("n-1", None, None) in _decisions(var)
    # while it is down the case system sends the next one, and retries the last
    _publish(
        mosquitto,
        [
            (topic(first), body(event="rectified", key="r-1"), {}),
            (topic(first), notified, {}),
        ],
    )
    run = RunProcess(config_path, mosquitto, log)
    wait_until(
        lambda: all(d[1] for d in _decisions(var)) and len(_decisions(var)) == 8,
        60,
        "the decisions after the restart to be settled",
    )
    outcomes = {key: (outcome, detail) for key, outcome, detail in _decisions(var)}
    assert outcomes["n-1"][0] == "replayed" and outcomes["r-1"][0] == "applied"
    assert _state(var, first) == "rectified"
    events = _events(var, first)
    assert events.count("notified") == 1 and events.count("rectified") == 1
    run.terminate()
