"""Harness for tests that run `streetwatch run` as a real process against a real Mosquitto,
a real HTTP case system and the simulated street, and account for what came out."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import yaml

from evidence.package import AFTER_SUFFIX
from ingest.config import load_config
from streetwatch.localbroker import Mosquitto
from streetwatch.scenario import build_scenario
from streetwatch.simulate import PublishReport, publish_scenario, scenario_start
from tests.conftest import REPO, market_site_text

DURATION_S = 900.0
SPEED = 90.0
FAULTS = 7


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class CaseSystem:
    """A real HTTP case system on loopback. It fails its first `fail_first` requests with 503,
    answers 503 to everything while `down` is set, 401 without the bearer `token` (when given),
    and deduplicates by Idempotency-Key as the
    design asks of receivers: `accepted` counts each case once, `repeats` counts re-sends."""

    def __init__(
        self,
        fail_first: int = 3,
        port: int = 0,
        token: str | None = None,
        fail_escalations_first: int = 0,
    ) -> None:
        """`fail_escalations_first`: escalations (`POST .../{case_id}/escalations`, JSON) get
        503 that many times; each is kept once by Idempotency-Key in `escalations`."""
        self.accepted: Counter[str] = Counter()
        self.escalations: dict[str, dict] = {}
        self.escalation_requests = 0
        self.escalation_repeats: Counter[str] = Counter()
        self.repeats: Counter[str] = Counter()
        self.requests = 0
        self.refused = 0
        self.unauthorized = 0
        self.down = False
        self._lock = threading.Lock()
        system = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with system._lock:
                    system.requests += 1
                    if token is not None and self.headers["Authorization"] != f"Bearer {token}":
                        system.unauthorized += 1
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if self.path.endswith("/escalations"):
                        self._escalation(body)
                        return
                    if system.down or system.requests <= fail_first:
                        system.refused += 1
                        self.send_response(503)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    assert self.headers["Content-Type"].startswith("multipart/form-data")
                    assert b"manifest.json" in body and b"manifest.sig" in body
                    key = self.headers["Idempotency-Key"]
                    if key in system.accepted:
                        system.repeats[key] += 1
                    else:
                        system.accepted[key] += 1
                    number = list(system.accepted).index(key) + 1
                answer = json.dumps({"case_no": f"CS-{number}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _escalation(self, body: bytes) -> None:
                system.escalation_requests += 1
                if system.down or system.escalation_requests <= fail_escalations_first:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                assert self.headers["Content-Type"] == "application/json"
                key = self.headers["Idempotency-Key"]
                if key in system.escalations:
                    system.escalation_repeats[key] += 1
                else:
                    system.escalations[key] = json.loads(body) | {"path": self.path}
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cases"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SILENCE_RULES = ("sensor-silent.yaml",)
SITE_RULES = "site-rules"


def site_rules(folder: Path) -> Path:
    """The catalog as runs on `demo_site` use it: without the silence rule. The scenarios
    publish a simulated past; once they end, the engine's clock follows the wall clock (days
    later) and every sensor turns "silent" at a moment no test can pin down. Silence has its own
    end-to-end test (tests/streetwatch/test_run_sensors.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    for rule in sorted((REPO / "rules" / "catalog").glob("*.yaml")):
        if rule.name not in SILENCE_RULES:
            (folder / rule.name).write_bytes(rule.read_bytes())
    return folder


def demo_site(tmp_path: Path, case_system: str | None = None, **overrides: object) -> Path:
    """The shipped devices.yaml with its storage under tmp_path (cameras stay off: sensors),
    and beside it `site-rules/` (`site_rules`), which `RunProcess` uses unless given `-r`.
    `overrides` replace top-level sections (e.g. `evidence=...`)."""
    doc = yaml.safe_load(market_site_text())
    doc["storage"] = {"root": str(tmp_path / "var")}
    if case_system is not None:
        doc["evidence"] = {
            "feed": {
                "http": {"url": case_system, "media": "upload"},
                "retry": {"min_delay_s": 0.2, "max_delay_s": 1.0},
            }
        }
    doc.update(overrides)
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    site_rules(tmp_path / SITE_RULES)
    return path


class RunProcess:
    live: ClassVar[list[RunProcess]] = []
    """Started and not yet stopped: the `stop_leftover_runs` fixture kills them."""

    def __init__(
        self,
        config: Path,
        broker: Mosquitto | None,
        log: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        wait_started: bool = True,
    ) -> None:
        """`broker` None: the one devices.yaml names (e.g. `embedded`)."""
        RunProcess.live.append(self)
        self.log = log
        self._err = log.open("ab")
        command = ["run", "-c", str(config), "--no-cameras", *extra]
        if not {"-r", "--rules"} & set(extra) and (config.parent / SITE_RULES).is_dir():
            command += ["-r", str(config.parent / SITE_RULES)]
        if broker is not None:
            command += ["--broker", broker.url]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streetwatch", *command, "--status-every", "1"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._log_start = log.stat().st_size
        if wait_started:
            wait_until(self._started, 60, "streetwatch run to start")

    def log_text(self) -> str:
        """What this process wrote to the (shared, appended) log."""
        with self.log.open("rb") as handle:
            handle.seek(self._log_start)
            return handle.read().decode(errors="replace")

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"streetwatch run exited: {self.log_text()[-3000:]}")
        return "running:" in self.log_text()

    def terminate(self) -> dict:
        RunProcess.live.remove(self)
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        self._err.close()
        assert self.proc.returncode == 0, self.log_text()[-3000:]
        return json.loads(out.decode().strip().splitlines()[-1])

    def wait_killed(self, timeout: float = 120) -> int:
        """Wait for the process to die by itself (a failpoint's SIGKILL); its return code."""
        self.proc.wait(timeout)
        RunProcess.live.remove(self)
        self._err.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no drain, no checkpoint, no goodbye."""
        RunProcess.live.remove(self)
        self.proc.kill()
        self.proc.wait(10)
        self._err.close()


def ops_up(port: int) -> bool:
    """Whether the run's ops endpoint (`--http-port`) answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5):
            return True
    except OSError:
        return False


def metric(port: int, name: str, default: float | None = None) -> float:
    """One series of the run's /metrics; `default` when it is absent (else an error)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    if default is None:
        raise AssertionError(f"{name} is not on /metrics")
    return default


def healthz(port: int) -> tuple[int, dict]:
    """The run's /healthz: status code and its JSON detail."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as page:
            return page.status, json.loads(page.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stop_leftover_runs() -> None:
    while RunProcess.live:
        run = RunProcess.live.pop()
        run.proc.kill()
        run.proc.wait(10)
        run._err.close()


def scenario(config_path: Path, duration_s: float = DURATION_S, seed: int = 3) -> list:
    config = load_config(config_path)
    start = scenario_start(duration_s, SPEED)
    return build_scenario(config, duration_s=duration_s, seed=seed, start=start, faults=True)


def publish(messages: list, broker: Mosquitto | str, speed: float = SPEED) -> PublishReport:
    url = broker if isinstance(broker, str) else broker.url
    return publish_scenario(messages, url=url, client_id="e2e-simulate", speed=speed)


def query(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def journaled(var: Path) -> int:
    return query(var / "journal.sqlite", "SELECT count(*) FROM readings")[0][0]


def all_analysed(var: Path, readings: int | None = None) -> bool:
    """The analysis cursor is at the newest reading, and (when given) that many are journaled:
    the publisher's acks come from the broker, so the consumer may still be committing."""
    journal = var / "journal.sqlite"
    if readings is not None and journaled(var) < readings:
        return False
    (top,) = query(journal, "SELECT coalesce(max(seq), 0) FROM readings")[0]
    rows = query(journal, "SELECT seq FROM cursors WHERE name = 'analysis'")
    return bool(rows) and rows[0][0] == top


def cases_of(var: Path) -> list[tuple[str, str, str]]:
    return query(var / "cases.sqlite", "SELECT case_id, rule_id, state FROM cases")


def settled(var: Path) -> bool:
    """Every case packaged (none still `opened`)."""
    return all(state != "opened" for _, _, state in cases_of(var))


def delivered(var: Path) -> bool:
    return all(state == "acknowledged" for _, _, state in cases_of(var))


def verify(config: Path, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streetwatch", "evidence", "verify", "-c", str(config), str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Accounting:
    """What a run lost or doubled, read from its journal, case store, evidence and the case
    system: the figures a fault test asserts on and docs/reliability.md reports."""

    readings_sent: int
    readings_journaled: int
    readings_lost: int
    dead_letters_sent: int
    dead_letters_kept: int
    cases: int
    cases_doubled: int
    cases_delivered: int | None
    cases_undelivered: int | None
    redeliveries_deduplicated: int | None
    packages_verified: int
    """Case packages in the verified chain (follow-up "after" packages counted apart)."""
    follow_ups_verified: int
    verify_ok: bool
    verify_output: str

    @property
    def lost(self) -> int:
        undelivered = self.cases_undelivered or 0
        failed = 0 if self.verify_ok else 1
        return (
            self.readings_lost
            + (self.dead_letters_sent - self.dead_letters_kept)
            + undelivered
            + failed
        )

    def as_dict(self) -> dict:
        row = asdict(self)
        row.pop("verify_output")
        return row


def account(
    config: Path,
    var: Path,
    readings_sent: int,
    dead_letters_sent: int = FAULTS,
    case_system: CaseSystem | None = None,
) -> Accounting:
    journal = var / "journal.sqlite"
    (rows,) = query(journal, "SELECT count(*) FROM readings")[0]
    (letters,) = query(
        journal, "SELECT count(*) FROM (SELECT DISTINCT topic, payload FROM dead_letters)"
    )[0]
    cases = cases_of(var)
    (distinct,) = query(var / "cases.sqlite", "SELECT count(DISTINCT violation_id) FROM cases")[0]
    result = verify(config, var / "evidence")
    found = re.search(r"(\d+) package\(s\)", result.stdout)
    follow_ups = len(list((var / "evidence").glob(f"*/*{AFTER_SUFFIX}/manifest.json")))
    ids = {case_id for case_id, _, _ in cases}
    return Accounting(
        readings_sent=readings_sent,
        readings_journaled=rows,
        readings_lost=readings_sent - rows,
        dead_letters_sent=dead_letters_sent,
        dead_letters_kept=letters,
        cases=len(cases),
        cases_doubled=len(cases) - distinct,
        cases_delivered=None if case_system is None else len(ids & set(case_system.accepted)),
        cases_undelivered=None if case_system is None else len(ids - set(case_system.accepted)),
        redeliveries_deduplicated=None
        if case_system is None
        else sum(case_system.repeats.values()),
        packages_verified=(int(found.group(1)) - follow_ups) if found else 0,
        follow_ups_verified=follow_ups if found else 0,
        verify_ok=result.returncode == 0,
        verify_output=result.stdout + result.stderr,
    )
