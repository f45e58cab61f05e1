"""The closed enforcement loop end to end, on real processes: `streetwatch run` (with its console
on --http-port) on a real Mosquitto, feeding a real HTTP case system, with the demo site's
fire-lane sensors. The rule's disposal time is cut to DISPOSE_S and it escalates at [1, 2]; the
readings' event times end at the moment they are published, so deadlines (event time + disposal
time) pass in real time, as the evidence thread's escalation check reads the wall clock.

- a car that leaves is cleared (an "after" package, chained, that verifies) and never escalates,
  even after its deadline;
- a car that stays escalates once per level to the case system (whose first escalation attempt
  fails) and on MQTT;
- decisions over HTTP (a token; a duplicate key; out of order; impossible; a bad token) and over
  MQTT (a duplicate; one that came before the case system's acknowledgement and waits for it)
  move the cases once each, and after a restart the case system's retries (HTTP and MQTT) change
  nothing;
- `streetwatch cases stats --json` reports the disposal time, the share within the deadline,
  the escalations and the decisions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from evidence.package import AFTER_SUFFIX
from ingest.config import load_config
from ingest.readings import Stream
from streetwatch.console.tokens import TokenStore, tokens_path
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.pipeline import CATALOG
from tests.conftest import REPO
from tests.runkit import CaseSystem, RunProcess, demo_site, query, verify, wait_until

DISPOSE_S = 45
"""The fire-lane rule's `dispose_within` here (the catalog's: 10 minutes)."""
RULE = "fire-lane-occupied"
LEAVER, STAYER = "geomag-fl-01", "geomag-fl-03"
FIRST_S, LEAVES_ARRIVE_S, LEAVES_S, STAYS_ARRIVE_S = -100, -45, -10, -80
"""Event times, seconds before the publish: the readings start; the car in bay 1 (raw field)
arrives and leaves (its case opens after the rule's 30 s dwell, about 15 s before the publish,
so its deadline is about DISPOSE_S - 15 = 30 s after it: the clearance comes well before); the
car in bay 3 (a sensor that decides on board) arrives and stays (its case opens about 50 s
before the publish: level 1 is due at once, level 2 about 2 * DISPOSE_S - 50 = 40 s after)."""


def _rules(tmp_path: Path) -> Path:
    """The catalog, with the fire-lane rule's deadline cut short and two escalation levels."""
    rules = tmp_path / "rules"
    shutil.copytree(CATALOG, rules)
    fire = rules / "fire-lane.yaml"
    text = fire.read_text(encoding="utf-8")
    assert "dispose_within: 10m\n" in text
    text = text.replace(
        "dispose_within: 10m\n", f"dispose_within: {DISPOSE_S}s\nescalate: [1, 2]\n"
    )
    fire.write_text(text, encoding="utf-8")
    return rules


def _readings(site: str, now: datetime) -> list[tuple[str, bytes]]:
    """Bay 1's raw field every second (a car from LEAVES_ARRIVE_S to LEAVES_S), bay 3's on-board
    decisions every 5 s (occupied from STAYS_ARRIVE_S), all up to `now`."""
    out = []
    for s in range(FIRST_S, 1):
        ts = (now + timedelta(seconds=s)).isoformat(timespec="milliseconds")
        car = LEAVES_ARRIVE_S <= s < LEAVES_S
        noise = 0.05 * ((s * 7) % 5)  # a real sensor never repeats itself exactly
        field = {"ts": ts, "x": 20.0 + noise, "y": -5.0 - noise, "z": 40.0 + noise}
        field["z"] += 25.0 if car else 0.0
        out.append((f"streetwatch/{site}/{LEAVER}/{Stream.GEOMAG.value}", field))
        if s % 5 == 0:
            state = {"ts": ts, "occupied": s >= STAYS_ARRIVE_S}
            out.append((f"streetwatch/{site}/{STAYER}/{Stream.GEOMAG.value}", state))
    return [(topic, json.dumps(body).encode()) for topic, body in out]


class Mqtt:
    """One MQTT v5 client on the test's broker: publishes at QoS 1 (each acknowledged) and keeps
    what arrives on its subscription."""

    def __init__(self, broker: Mosquitto, subscribe: str) -> None:
        self.received: list[tuple[str, dict]] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="loop-casesys", protocol=mqtt.MQTTv5
        )
        self.client.on_message = lambda _c, _u, m: self.received.append(
            (m.topic, json.loads(m.payload))
        )
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(subscribe, qos=1)
        assert subscribed.wait(30), "no SUBACK from mosquitto"

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _cases(var: Path) -> dict[str, dict]:
    """The run's cases by the device that saw them."""
    rows = query(
        var / "cases.sqlite",
        "SELECT case_id, json_extract(violation, '$.devices[0]'), state, opened_at, deadline,"
        " cleared_at, escalation_level FROM cases",
    )
    keys = ("case_id", "device", "state", "opened_at", "deadline", "cleared_at", "level")
    return {row[1]: dict(zip(keys, row, strict=True)) for row in rows}


def _events(var: Path, case_id: str) -> list[tuple[str, dict]]:
    rows = query(
        var / "cases.sqlite",
        f"SELECT event, data FROM case_events WHERE case_id = '{case_id}' ORDER BY seq",
    )
    return [(event, json.loads(data) if data else {}) for event, data in rows]


def _named(var: Path, case_id: str, name: str) -> int:
    return [event for event, _ in _events(var, case_id)].count(name)


def _decisions(var: Path) -> dict[str, tuple]:
    rows = query(var / "journal.sqlite", "SELECT key, outcome, detail, attempts FROM decisions")
    return {key: (outcome, detail, attempts) for key, outcome, detail, attempts in rows}


def test_the_enforcement_loop_closes_on_real_processes(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    began = time.monotonic()
    system = CaseSystem(fail_first=0, fail_escalations_first=1)
    system.down = True  # until the MQTT decision below has had to wait for the acknowledgement
    config = demo_site(
        tmp_path,
        evidence={
            "feed": {
                "http": {"url": system.url, "media": "upload"},
                "mqtt": {"topic": "streetwatch/{site}/cases"},
                "retry": {"min_delay_s": 0.2, "max_delay_s": 1.0},
            }
        },
    )
    loaded = load_config(config)
    site = loaded.site.id
    var = tmp_path / "var"
    var.mkdir()
    assert loaded.console.users_file is not None
    _, token = TokenStore(tokens_path(loaded.console.users_file)).add("casesys", "operator")
    rules = _rules(tmp_path)
    casesys = Mqtt(mosquitto, f"streetwatch/{site}/cases/+/escalation")
    http = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"})

    def start() -> tuple[RunProcess, str]:
        """`streetwatch run` with its console; the console's base URL."""
        port = free_port()
        log = tmp_path / "run.log"
        run = RunProcess(config, mosquitto, log, "--rules", str(rules), "--http-port", str(port))
        return run, f"http://127.0.0.1:{port}"

    try:
        _loop(start, system, casesys, http, config, var, site)
    finally:
        http.close()
        casesys.close()
        system.close()
    assert time.monotonic() - began < 150


def _loop(
    start: Callable[[], tuple[RunProcess, str]],
    system: CaseSystem,
    casesys: Mqtt,
    http: httpx.Client,
    config: Path,
    var: Path,
    site: str,
) -> None:
    run, console = start()
    published = datetime.now(UTC)
    casesys.publish(_readings(site, published))
    wait_until(
        lambda: {LEAVER, STAYER} <= set(_cases(var)) and _cases(var)[LEAVER]["cleared_at"],
        60,
        "both cases opened and the one that left cleared",
    )
    leaver, stayer = _cases(var)[LEAVER], _cases(var)[STAYER]
    assert stayer["cleared_at"] is None
    # the clearance came before the leaver's deadline, in event time and on the wall clock
    assert leaver["cleared_at"] < leaver["deadline"] and time.time() < leaver["deadline"]
    (cleared,) = [data for event, data in _events(var, leaver["case_id"]) if event == "cleared"]
    assert cleared["disposal_s"] == pytest.approx(
        leaver["cleared_at"] - leaver["opened_at"], abs=0.01
    )
    assert 0 < cleared["disposal_s"] < DISPOSE_S

    # over MQTT, before the case system has taken the case (it is down): the decision waits for
    # the acknowledgement instead of being lost; its duplicate is journaled once
    decide = f"streetwatch/{site}/cases/{leaver['case_id']}/decision"
    confirmed = json.dumps({"event": "confirmed", "by": "审核员", "key": "m-1"}).encode()
    casesys.publish([(decide, confirmed), (decide, confirmed)])
    wait_until(
        lambda: _decisions(var).get("m-1", (None, None, 0))[2] >= 1,
        30,
        "the early decision to wait for the acknowledgement",
    )
    outcome, detail, _ = _decisions(var)["m-1"]
    assert outcome is None and detail.startswith("not_acknowledged: ")
    assert _cases(var)[LEAVER]["state"] in ("opened", "evidence_complete", "submitted")
    system.down = False
    wait_until(
        lambda: _decisions(var)["m-1"][0] == "applied",
        60,
        "the early decision applied once the case system acknowledged the case",
    )
    assert _cases(var)[LEAVER]["state"] == "confirmed"
    assert _named(var, leaver["case_id"], "confirmed") == 1

    # over HTTP, on the car that stays
    wait_until(
        lambda: _cases(var)[STAYER]["state"] == "acknowledged", 60, "the stayer acknowledged"
    )
    case_id = stayer["case_id"]
    url = f"{console}/api/v1/cases/{case_id}/events"
    notified = {"event": "notified", "how": "sms", "by": "审核员"}
    bad = http.post(
        url,
        json={"event": "confirmed"},
        headers={"Idempotency-Key": "h-0", "Authorization": "Bearer sw_not-a-token"},
    )
    assert bad.status_code == 401, bad.text
    early = http.post(url, json=notified, headers={"Idempotency-Key": "h-2"})
    assert early.status_code == 409 and early.json()["state"] == "acknowledged", early.text
    body = {"event": "confirmed", "by": "审核员", "reason": "车停消防通道"}
    first = http.post(url, json=body, headers={"Idempotency-Key": "h-1"})
    assert first.status_code == 201, first.text
    again = http.post(url, json=body, headers={"Idempotency-Key": "h-1"})
    assert again.status_code == 200 and again.json()["replay"] is True, again.text
    impossible = http.post(url, json={"event": "reopened"}, headers={"Idempotency-Key": "h-3"})
    assert impossible.status_code == 409 and impossible.json()["state"] == "confirmed"
    later = http.post(url, json=notified, headers={"Idempotency-Key": "h-2"})
    assert later.status_code == 201 and later.json()["state"] == "notified", later.text
    assert _named(var, case_id, "confirmed") == 1 and _named(var, case_id, "notified") == 1

    # the stayer escalates at its deadline and again at twice it: once per level to the case
    # system (the first attempt failed: 503) and on MQTT
    keys = {f"{case_id}/escalation/{level}" for level in (1, 2)}
    wait_until(
        lambda: (
            set(system.escalations) == keys
            and {m["idempotency_key"] for _, m in casesys.received} == keys
        ),
        2 * DISPOSE_S,
        f"both escalation levels delivered: {system.escalations}, {casesys.received}",
    )
    assert system.escalation_requests == 3 and not system.escalation_repeats
    level1 = system.escalations[f"{case_id}/escalation/1"]
    assert level1["path"] == f"/cases/{case_id}/escalations" and level1["of"] == 2
    assert {t for t, _ in casesys.received} == {f"streetwatch/{site}/cases/{case_id}/escalation"}
    # at least once on MQTT (QoS 1): a receiver keeps one per key
    levels = {m["idempotency_key"]: m["level"] for _, m in casesys.received}
    assert levels == {f"{case_id}/escalation/{level}": level for level in (1, 2)}
    assert _named(var, case_id, "escalated") == 2
    # the leaver's deadline has long passed: it never escalated
    assert time.time() > _cases(var)[LEAVER]["deadline"] + 10
    assert _named(var, leaver["case_id"], "escalated") == 0
    assert _cases(var)[LEAVER]["level"] in (0, None)
    assert not any(leaver["case_id"] in key for key in system.escalations)

    # over MQTT, the stayer rectified: a duplicate (the case system's retry) changes nothing
    decide = f"streetwatch/{site}/cases/{case_id}/decision"
    rectified = json.dumps({"event": "rectified", "key": "m-2"}).encode()
    casesys.publish([(decide, rectified), (decide, rectified)])
    wait_until(lambda: _decisions(var).get("m-2", (None,))[0], 30, "the rectified decision")
    assert _decisions(var)["m-2"][0] == "applied"
    assert _cases(var)[STAYER]["state"] == "rectified" and _named(var, case_id, "rectified") == 1

    # the after package of the cleared case, chained after the cases' own packages
    after = var / "evidence" / _day(var, leaver["case_id"]) / f"{leaver['case_id']}{AFTER_SUFFIX}"
    wait_until(lambda: (after / "manifest.json").exists(), 60, "the after package")
    run.terminate()

    # after a restart, the case system's retries change nothing: over HTTP the key's first
    # result comes back; over MQTT the journal knows the decision, and the next one applies
    run, console = start()
    url = f"{console}/api/v1/cases/{case_id}/events"
    replay = http.post(url, json=body, headers={"Idempotency-Key": "h-1"})
    assert replay.status_code == 200 and replay.json()["state"] == "confirmed", replay.text
    closed = json.dumps({"event": "closed", "key": "m-3"}).encode()
    casesys.publish([(decide, rectified), (decide, closed)])
    wait_until(lambda: _decisions(var).get("m-3", (None,))[0], 30, "the closed decision")
    assert _decisions(var)["m-3"][0] == "applied"
    assert query(var / "journal.sqlite", "SELECT count(*) FROM decisions WHERE key = 'm-2'") == [
        (1,)
    ]
    assert _cases(var)[STAYER]["state"] == "closed"
    for event in ("confirmed", "notified", "rectified", "closed"):
        assert _named(var, case_id, event) == 1, event
    run.terminate()
    checked = verify(config, var / "evidence")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "3 package(s)" in checked.stdout, checked.stdout
    manifest = json.loads((after / "manifest.json").read_bytes())
    assert manifest["kind"] == "follow_up"
    assert manifest["follows"]["case_id"] == leaver["case_id"]
    assert manifest["time_window"]["within_deadline"] is True

    stats = subprocess.run(
        [sys.executable, "-m", "streetwatch", "cases", "stats", "-c", str(config), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stats.returncode == 0, stats.stderr
    figures = json.loads(stats.stdout)
    (rule,) = [f for f in figures["rules"] if f["rule_id"] == RULE]
    assert rule["opened"] == 2 and rule["cleared_by_box"] == 1 and rule["rectified"] == 1
    assert rule["disposed"] == 2
    # nearest rank: p50 is the quicker of the two, the box's clearance
    assert rule["disposal_p50_s"] == pytest.approx(cleared["disposal_s"], abs=0.01)
    assert rule["disposal_p90_s"] > 2 * DISPOSE_S - 60  # rectified after the second level
    assert rule["with_deadline"] == 2 and rule["within_deadline"] == 1
    assert rule["within_deadline_share"] == 0.5
    assert rule["escalated_cases"] == 1 and rule["escalations"] == 2
    assert rule["rejected"] == 0
    assert figures["total"]["escalations"] == 2


def _day(var: Path, case_id: str) -> str:
    """The evidence folder (a date) that holds the case's own package."""
    (package,) = query(
        var / "cases.sqlite", f"SELECT package FROM cases WHERE case_id = '{case_id}'"
    )
    return Path(package[0]).parent.name
