"""The case system down for an hour: cases wait in the outbox (through a restart of the box),
nothing is given up, and when it comes back each case is delivered once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore, State
from evidence.feed import CaseFeed
from evidence.keys import Signer
from evidence.service import EvidenceService
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.simulate import PublishReport
from tests.evidence.evidence_support import VideoRing, ensure_vtest, make_violation, site_config
from tests.faults.conftest import Reliability
from tests.runkit import (
    FAULTS,
    CaseSystem,
    RunProcess,
    account,
    all_analysed,
    cases_of,
    delivered,
    demo_site,
    metric,
    publish,
    scenario,
    settled,
    wait_until,
)

HOUR_S = 3600.0
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def test_case_system_down_for_an_hour_of_street_then_every_case_delivered_once(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    """An hour of simulated street (at 90x) while the case system answers 503, with a restart
    of the box half way; then the case system comes back."""
    case_system = CaseSystem(fail_first=0)
    case_system.down = True
    config = demo_site(tmp_path, case_system.url)
    var = tmp_path / "var"
    messages = scenario(config, duration_s=HOUR_S, seed=5)
    log = tmp_path / "run.log"
    port = free_port()
    run = RunProcess(config, mosquitto, log, "--http-port", str(port))
    reports: list[PublishReport] = []
    publisher = threading.Thread(
        target=lambda: reports.append(publish(messages, mosquitto)), daemon=True
    )
    publisher.start()
    wait_until(lambda: len(cases_of(var)) >= 3 and settled(var), 60, "cases in the outage")
    assert metric(port, "streetwatch_feed_feed_backlog") >= 1
    run.terminate()
    run = RunProcess(config, mosquitto, log, "--http-port", str(port))
    publisher.join(180)
    assert reports and reports[0].acked == len(messages)
    wait_until(lambda: all_analysed(var, len(messages) - FAULTS), 120, "the hour analysed")
    wait_until(lambda: settled(var), 60, "every case packaged")
    cases = cases_of(var)
    assert {state for _, _, state in cases} == {"submitted"}, cases
    # the backlog gauge and the first attempts follow the packaging: wait for them, however
    # long that takes on a busy box, rather than sleep a guess (the case system is still down)
    wait_until(
        lambda: metric(port, "streetwatch_feed_feed_backlog") == len(cases),
        60,
        "every case in the feed's backlog",
    )
    wait_until(lambda: case_system.refused >= len(cases), 60, "every case tried in the outage")
    assert {state for _, _, state in cases_of(var)} == {"submitted"}
    refused_in_outage = case_system.refused

    case_system.down = False
    wait_until(lambda: delivered(var), 60, "every case delivered after the outage")
    wait_until(lambda: metric(port, "streetwatch_feed_feed_backlog") == 0, 30, "empty backlog")
    run.terminate()
    case_system.close()

    books = account(config, var, len(messages) - FAULTS, case_system=case_system)
    reliability.record(
        "fault",
        "case system down for an hour of simulated street (503), box restarted in it",
        tried=1,
        lost=books.lost + books.cases_doubled,
        refused_requests=refused_in_outage,
        **books.as_dict(),
    )
    assert books.readings_lost == 0 and books.cases_doubled == 0, books
    assert books.cases_undelivered == 0 and books.cases_delivered == len(cases) >= 10, books
    assert books.verify_ok and books.packages_verified == len(cases), books.verify_output


def outage(tmp_path: Path, reliability: Reliability, hours: int, cases: int) -> None:
    """The feed with the shipped retry settings (1 s doubling to 600 s) on its own clock,
    stepped through `hours` in which the case system does not even listen."""
    span = hours * HOUR_S
    port = free_port()
    config = site_config(
        tmp_path, feed={"http": {"url": f"http://127.0.0.1:{port}/cases", "media": "upload"}}
    )
    assert config.evidence.feed.retry.max_delay_s == 600.0
    ring = VideoRing.from_file(ensure_vtest(), "cam-1", START, 30.0)
    store = CaseStore(tmp_path / "var/cases.sqlite")
    builder = EvidenceBuilder(config, Signer.load_or_create(tmp_path / "key.pem"), ring, None)
    service = EvidenceService(builder, store)
    now = [1_800_000_000.0]
    start = now[0]
    feed = CaseFeed(config, store, clock=lambda: now[0])
    opened = 0
    while now[0] - start < span:
        if opened < cases and now[0] - start >= opened * span / cases:
            service.handle(make_violation(START, opened, dwell_s=2.0, pre_s=0.5, post_s=0.5))
            opened += 1
        feed.drain_once()
        now[0] += 5.0
    rows = feed.outbox()
    assert len(rows) == cases and {r["state"] for r in rows} == {"pending"}, rows
    assert {c.state for c in store.list()} == {State.SUBMITTED}
    attempts = max(r["attempts"] for r in rows)
    assert 5 <= attempts <= 12 + 8 * hours, rows
    assert feed.stats["http_refused"] == 0
    feed.close()

    system = CaseSystem(fail_first=0, port=port)
    try:
        feed = CaseFeed(config, store, clock=lambda: now[0])
        for _ in range(200):
            if all(c.state is State.ACKNOWLEDGED for c in store.list()):
                break
            now[0] += 60.0
            feed.drain_once()
        feed.close()
    finally:
        system.close()
    acknowledged = sum(c.state is State.ACKNOWLEDGED for c in store.list())
    lost = cases - len(system.accepted) + sum(system.repeats.values())
    reliability.record(
        "fault",
        f"case system unreachable for {hours} h of feed clock (shipped 1-600 s backoff)",
        tried=1,
        lost=lost + (cases - acknowledged),
        cases=cases,
        most_attempts_in_the_hour=attempts,
    )
    assert acknowledged == cases
    assert system.requests == len(system.accepted) == cases


def test_feed_waits_out_an_hour_unreachable_with_bounded_retries(
    tmp_path: Path, reliability: Reliability
) -> None:
    outage(tmp_path, reliability, hours=1, cases=12)


@pytest.mark.soak
def test_soak_feed_waits_out_eight_hours_unreachable(
    tmp_path: Path, reliability: Reliability
) -> None:
    outage(tmp_path, reliability, hours=8, cases=20)
