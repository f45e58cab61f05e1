"""The box's wall clock jumps forward 2 h, and back 1 h, while `streetwatch run` ingests the
street, as an NTP step does: CLOCK_REALTIME moves, CLOCK_MONOTONIC does not. Afterwards every
reading is journaled once, the cases equal those of a run whose clock stood still, each is
delivered once (the case feed's retry timers survive the step back), and every package verifies.

The step is made by a small LD_PRELOAD library compiled here (`clockstep.c`): it adds the offset
written in a file to CLOCK_REALTIME (clock_gettime, gettimeofday, time) and leaves every other
clock alone. Debian's libfaketime 0.9.10 cannot do this for Python 3.11: with
FAKETIME_DONT_FAKE_MONOTONIC=1 its clock_nanosleep turns the interpreter's absolute monotonic
sleeps into negative times (time.sleep fails with EINVAL, wolfcw/libfaketime#426), and without
it every threading wait on the monotonic clock hangs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

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
    journaled,
    publish,
    query,
    scenario,
    settled,
    wait_until,
)

HOUR = 3600

CLOCKSTEP_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*gettime_fn)(clockid_t, struct timespec *);
static gettime_fn real_gettime;
static volatile long long offset_ns;
static volatile long long read_at_ns = -1;

static gettime_fn real(void) {
    if (!real_gettime) real_gettime = (gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    return real_gettime;
}

/* The offset (seconds, may be negative) in $CLOCKSTEP_FILE, re-read every 20 ms. */
static long long offset(void) {
    struct timespec mono;
    real()(CLOCK_MONOTONIC, &mono);
    long long now = mono.tv_sec * 1000000000LL + mono.tv_nsec;
    if (read_at_ns < 0 || now - read_at_ns > 20000000LL) {
        const char *path = getenv("CLOCKSTEP_FILE");
        int fd = path ? open(path, O_RDONLY) : -1;
        if (fd >= 0) {
            char buf[64];
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n > 0) {
                buf[n] = 0;
                offset_ns = (long long)(strtod(buf, NULL) * 1e9);
            }
        }
        read_at_ns = now;
    }
    return offset_ns;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    int rc = real()(clock, ts);
    if (rc == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
        long long t = ts->tv_sec * 1000000000LL + ts->tv_nsec + offset();
        ts->tv_sec = t / 1000000000LL;
        ts->tv_nsec = t % 1000000000LL;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
"""


@pytest.fixture(scope="session")
def clockstep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LD_PRELOAD library that steps CLOCK_REALTIME, built with the system's C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc/gcc) to build the clock-step library")
    where = tmp_path_factory.mktemp("clockstep")
    (where / "clockstep.c").write_text(CLOCKSTEP_C)
    library = where / "libclockstep.so"
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O2",
            "-o",
            str(library),
            str(where / "clockstep.c"),
            "-ldl",
        ],
        check=True,
        capture_output=True,
    )
    return library


def stepped(library: Path, offset_file: Path) -> dict[str, str]:
    return {"LD_PRELOAD": str(library), "CLOCKSTEP_FILE": str(offset_file)}


def test_clockstep_moves_only_the_wall_clock(clockstep: Path, tmp_path: Path) -> None:
    """The library itself: time.time() and datetime.now() step, time.monotonic() does not,
    and time.sleep and threading waits keep working (what libfaketime 0.9.10 breaks)."""
    offset = tmp_path / "offset"
    offset.write_text("0")
    probe = (
        "import time, threading, datetime, sys\n"
        "w0, m0 = time.time(), time.monotonic()\n"
        "open(sys.argv[1], 'w').write('-3600')\n"
        "time.sleep(0.1); threading.Event().wait(0.1)\n"
        "w1, m1, d1 = time.time(), time.monotonic(), datetime.datetime.now().timestamp()\n"
        "print(round(w1 - w0), round(m1 - m0, 1), round(d1 - w1))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(offset)],
        env={"PATH": "/usr/bin:/bin", **stepped(clockstep, offset)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.split() == ["-3600", "0.2", "0"], out


def run_street(
    mosquitto: Mosquitto,
    where: Path,
    messages: list,
    case_system: CaseSystem,
    env: dict[str, str] | None = None,
    during: object = None,
) -> tuple[Path, Path, RunProcess]:
    """One `streetwatch run` over the whole street; `during(var)` runs while it publishes."""
    config = demo_site(where, case_system.url)
    var = where / "var"
    run = RunProcess(config, mosquitto, where / "run.log", env=env)
    reports: list[PublishReport] = []
    publisher = threading.Thread(
        target=lambda: reports.append(publish(messages, mosquitto)), daemon=True
    )
    publisher.start()
    if callable(during):
        during(var)
    publisher.join(300)
    assert reports and reports[0].acked == len(messages)
    wait_until(lambda: all_analysed(var, len(messages) - FAULTS), 120, "every reading analysed")
    wait_until(lambda: settled(var), 60, "every case packaged")
    wait_until(lambda: delivered(var), 60, "every case delivered")
    return config, var, run


def attempted(var: Path) -> bool:
    """A delivery failed and waits for its retry in the outbox."""
    outbox = var / "case_outbox.sqlite"
    if not outbox.exists():
        return False
    rows = query(outbox, "SELECT count(*) FROM outbox WHERE state = 'pending' AND attempts > 0")
    return rows[0][0] > 0


def jumps(
    mosquitto: Mosquitto,
    tmp_path: Path,
    reliability: Reliability,
    clockstep: Path,
    rounds: int,
    duration_s: float,
) -> None:
    (tmp_path / "control").mkdir()
    control_system = CaseSystem(fail_first=0)
    config = demo_site(tmp_path / "control", control_system.url)
    messages = scenario(config, duration_s=duration_s, seed=6)
    sent = len(messages) - FAULTS
    _, var, run = run_street(mosquitto, tmp_path / "control", messages, control_system)
    run.terminate()
    control_system.close()
    expected = Counter(rule for _, rule, _ in cases_of(var))
    assert expected

    for direction, before, after in (("forward 2 h", 0, 2 * HOUR), ("back 1 h", 2 * HOUR, HOUR)):
        found: Counter[str] = Counter()
        for round_ in range(rounds):
            where = tmp_path / f"{direction.split()[0]}-{round_}"
            where.mkdir()
            offset = where / "clock-offset"
            offset.write_text(str(before))
            case_system = CaseSystem(fail_first=0)
            case_system.down = True

            def step(
                var: Path, offset: Path = offset, system: CaseSystem = case_system, to: int = after
            ) -> None:
                # the step lands while a delivery waits for its retry and readings stream in
                wait_until(lambda: attempted(var), 60, "a failed delivery waiting for its retry")
                wait_until(lambda: journaled(var) > 0, 30, "readings")
                offset.write_text(str(to))
                system.down = False

            config, var, run = run_street(
                mosquitto, where, messages, case_system, stepped(clockstep, offset), step
            )
            summary = run.terminate()
            case_system.close()
            books = account(config, var, sent, case_system=case_system)
            got = Counter(rule for _, rule, _ in cases_of(var))
            missing, extra = expected - got, got - expected
            lost = books.lost + books.cases_doubled + sum(missing.values()) + sum(extra.values())
            found["lost"] += lost
            found["cases"] += books.cases
            found["packages_verified"] += books.packages_verified
            found["redeliveries_deduplicated"] += books.redeliveries_deduplicated or 0
            assert summary["pipeline"].get("analysis_errors", 0) == 0, summary
            assert books.readings_lost == 0 and books.dead_letters_kept == FAULTS, books
            assert books.cases_doubled == 0 and books.cases_undelivered == 0, books
            assert books.verify_ok, books.verify_output
            assert books.packages_verified == books.cases, books
            assert got == expected, f"{direction}: missing {missing}, extra {extra}"
        reliability.record(
            "fault",
            f"clock jumps {direction}",
            tried=rounds,
            lost=found.pop("lost"),
            readings_per_run=sent,
            expected_cases=sum(expected.values()),
            **found,
        )


def test_clock_jumps_lose_and_double_nothing(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability, clockstep: Path
) -> None:
    jumps(mosquitto, tmp_path, reliability, clockstep, rounds=1, duration_s=600.0)


@pytest.mark.soak
@pytest.mark.timeout(290)
def test_soak_clock_jumps(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability, clockstep: Path
) -> None:
    jumps(mosquitto, tmp_path, reliability, clockstep, rounds=3, duration_s=900.0)
