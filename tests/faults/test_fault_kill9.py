"""kill -9 at random points (journal commit, analysis checkpoint, each step of the evidence
commit, case-feed delivery) over many iterations, while the street keeps publishing: after the
last restart every reading is journaled once, every case is opened once and delivered once,
and every evidence package verifies. The cases match those of a run that was never killed."""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path

import pytest

from ingest.failpoints import ENV, POINTS
from streetwatch.localbroker import Mosquitto
from streetwatch.simulate import PublishReport
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
    publish,
    scenario,
    wait_until,
)

SPEED = 45.0
"""Slower than the other end-to-end tests so that kills land while cases are being packaged."""

PASSES = {
    "journal.before_commit": (1, 40),
    "journal.committed": (1, 40),
    "analysis.stored": (1, 15),
    "evidence.collected": (1, 2),
    "evidence.signed": (1, 2),
    "evidence.pending": (1, 2),
    "evidence.renamed": (1, 2),
    "evidence.head": (1, 2),
    "feed.before_send": (1, 2),
    "feed.sent": (1, 2),
}
"""How many passes through each point a process makes before it is killed: drawn at random."""

PATIENCE_S = 12.0
"""An armed point not reached by then (no case ready yet, say) gets a plain kill -9 instead."""


def control_cases(tmp_path: Path, mosquitto: Mosquitto, messages: list) -> Counter[str]:
    """The rules' verdicts when nothing is killed: what the killed runs must end up with."""
    config = demo_site(tmp_path / "control")
    var = tmp_path / "control" / "var"
    run = RunProcess(config, mosquitto, tmp_path / "control.log")
    report = publish(messages, mosquitto, speed=SPEED * 4)
    assert report.acked == len(messages)
    wait_until(lambda: all_analysed(var, len(messages) - FAULTS), 120, "the control run")
    wait_until(lambda: all(s != "opened" for _, _, s in cases_of(var)), 60, "control packages")
    run.terminate()
    return Counter(rule for _, rule, _ in cases_of(var))


def kill_again_and_again(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability, kills: int, seed: int
) -> None:
    # decisions.applied needs the case system's decisions: tests/streetwatch/test_run_decisions.py
    points = [p for p in POINTS if p != "decisions.applied"]
    assert set(PASSES) == set(points)
    rng = random.Random(seed)
    (tmp_path / "control").mkdir()
    case_system = CaseSystem(fail_first=0)
    config = demo_site(tmp_path, case_system.url)
    var = tmp_path / "var"
    messages = scenario(config, duration_s=900.0 * max(1, kills // 12), seed=seed)
    expected = control_cases(tmp_path, mosquitto, messages)
    log = tmp_path / "run.log"

    reports: list[PublishReport] = []
    publisher = threading.Thread(
        target=lambda: reports.append(publish(messages, mosquitto, speed=SPEED)), daemon=True
    )
    publisher.start()
    reached: Counter[str] = Counter()
    stages = sorted({point.split(".")[0] for point in points})
    for kill in range(kills):
        stage = stages[kill % len(stages)]
        point = rng.choice([p for p in points if p.startswith(f"{stage}.")])
        passes = rng.randint(*PASSES[point])
        run = RunProcess(config, mosquitto, log, env={ENV: f"{point}={passes}"}, wait_started=False)
        try:
            run.proc.wait(PATIENCE_S)
        except Exception:
            run.kill()
            reached["(random moment)"] += 1
        else:
            run.wait_killed()
            assert run.proc.returncode == -9, run.log_text()[-2000:]
            assert f"failpoint {point} reached" in run.log_text()
            reached[point] += 1
    publisher.join(300)
    assert reports and reports[0].acked == len(messages)

    final = RunProcess(config, mosquitto, log)
    wait_until(lambda: all_analysed(var, len(messages) - FAULTS), 120, "the last restart")
    wait_until(lambda: delivered(var), 120, "every case delivered")
    final.terminate()
    case_system.close()

    books = account(config, var, len(messages) - FAULTS, case_system=case_system)
    got = Counter(rule for _, rule, _ in cases_of(var))
    missing, extra = expected - got, got - expected
    lost = books.lost + books.cases_doubled + sum(missing.values()) + sum(extra.values())
    reliability.record(
        "fault",
        "kill -9 at random points (journal, analysis, evidence, feed)",
        tried=kills,
        lost=lost,
        points=dict(reached),
        **books.as_dict(),
    )
    assert books.readings_lost == 0, books
    assert books.dead_letters_kept == FAULTS, books
    assert books.cases_doubled == 0 and books.cases_undelivered == 0, books
    assert books.verify_ok, books.verify_output
    assert books.packages_verified == books.cases > 0
    assert got == expected, f"missing {missing}, extra {extra}"
    assert sum(reached.values()) == kills
    assert len({point.split(".")[0] for point in reached}) >= 3, reached


def test_kill_9_at_random_points_loses_and_doubles_nothing(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    kill_again_and_again(mosquitto, tmp_path, reliability, kills=10, seed=8)


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_soak_kill_9_at_random_points(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    kill_again_and_again(mosquitto, tmp_path, reliability, kills=48, seed=21)
