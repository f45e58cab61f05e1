"""`make demo`: the demo site end to end on this machine, with no server to install.

The embedded broker (a private Mosquitto on loopback), the whole `streetwatch run` pipeline in
this process on devices.yaml (four cameras on real pixels with the COCO model from the shared
assets: vtest.avi's plaza with a van and a car parked at the kerb, the ABODA pavement where a bag
is left by a shop front, Debian's dog.jpg and a plate photo as still cameras with parked
bicycles and a parked car; the catalog rules, the camera ones with their dwell shortened for
the demo, plus one demo rule for people lingering at a shop front), and `streetwatch simulate`
feeding the sensors (with a few deliberately bad messages). Where the shared assets are absent,
their cameras are left out and the COCO model falls back to the person model, one line each.
The operator console serves on http://127.0.0.1:8088/ (`--http-port`), with an admin whose
one-time password is printed at the start. A status line every two seconds; at the end, a
table of the cases opened (with the party each names: merchant or plate), each with its
evidence package verified. Bounded: it ends by itself within five minutes unless
--keep-running (`make demo DEMO_ARGS=--keep-running` keeps the console up). Everything lands
under var/demo/.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from detectors.assets import MISSING_HINT
from evidence.cases import Case, CaseStore
from evidence.keys import Verifier
from evidence.settings import evidence_paths
from evidence.stats import case_stats
from evidence.verify import verify_chain, verify_package
from ingest.config import VIDEO_PUSH, EvidenceMqttFeed, SiteConfig, load_config
from streetwatch.embedded import start_embedded_broker
from streetwatch.localbroker import free_port
from streetwatch.logs import setup_logging
from streetwatch.pipeline import CATALOG, Pipeline, PipelineOptions
from streetwatch.run_cli import start_console, status_line
from streetwatch.scenario import build_scenario
from streetwatch.scenario_drone import publish_footage_telemetry
from streetwatch.scenario_jt808 import Player, jt808_reports
from streetwatch.scenario_sweeper import with_deadlines_at
from streetwatch.simulate import publish_scenario, scenario_start
from streetwatch.users import UserStore

DEMO_RULES = Path(__file__).resolve().parent / "demo_rules"
SWEEP_DEADLINE_S = 60.0
"""The sweeper's deadlines, this long after the demo starts: after the box starts watching (the
cameras' first frames), and reached by simulated time (which starts `duration - duration/speed`
behind the clock) near the end of the first round, while the sweeper still reports."""


def demo_rules(root: Path) -> Path:
    """The catalog plus the demo's own rules, in a folder the operator may edit live."""
    rules = root / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    for source in [*CATALOG.glob("*.yaml"), *DEMO_RULES.glob("*.yaml")]:
        shutil.copyfile(source, rules / source.name)
    return rules


PERSON_MODEL = Path("var/models/person-yolov8s.pt")
PERSON_CLASSES = {"Normal": "person", "Fall": "person"}


def without_missing_assets(config: SiteConfig) -> tuple[SiteConfig, list[str]]:
    """The demo site as this clone can run it: where the shared assets are absent (a user's own
    clone), cameras whose footage is missing are left out and the COCO model falls back to the
    person model `make footage` installs. Returns the site and one note per change."""
    notes: list[str] = []
    devices = []
    for device in config.devices:
        if device.detect is None:
            devices.append(device)
            continue
        stream = device.stream
        local = bool(stream) and "://" not in stream and stream not in VIDEO_PUSH
        if local and not Path(stream).exists():
            notes.append(f"{device.id}: {stream} is absent ({MISSING_HINT}); camera left out")
            continue
        if not Path(device.detect.weights).exists() and PERSON_MODEL.exists():
            notes.append(
                f"{device.id}: {device.detect.weights} is absent; falling back to the person "
                f"model {PERSON_MODEL} (people only: no bicycles, vehicles or plates)"
            )
            detect = device.detect.model_copy(
                update={"weights": PERSON_MODEL, "classes": PERSON_CLASSES}
            )
            device = device.model_copy(update={"detect": detect})
        devices.append(device)
    return config.model_copy(update={"devices": devices}), notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streetwatch-demo", description=__doc__)
    parser.add_argument("-c", "--config", type=Path, default=Path("devices.yaml"))
    parser.add_argument("--duration", type=float, default=1200, help="simulated seconds")
    parser.add_argument("--speed", type=float, default=10, help="simulated seconds per second")
    parser.add_argument("--keep-running", action="store_true", help="loop until Ctrl-C")
    parser.add_argument("--http-host", default="127.0.0.1", help="the console's bind address")
    parser.add_argument(
        "--http-port", type=int, default=8088, help="the console's port (0: a free one)"
    )
    args = parser.parse_args(argv)

    setup_logging("WARNING")
    config, notes = without_missing_assets(load_config(args.config))
    # the sweeper's deadlines fall inside this run: the segment it leaves out opens a case
    config = with_deadlines_at(config, datetime.now(UTC) + timedelta(seconds=SWEEP_DEADLINE_S))
    for note in notes:
        print(f"demo: {note}")
    root = Path("var/demo").resolve()
    shutil.rmtree(root, ignore_errors=True)
    config = config.model_copy(
        update={
            "broker": config.broker.model_copy(
                update={"url": "embedded", "embedded_port": free_port()}
            ),
            "storage": config.storage.model_copy(
                update={
                    "root": root,
                    "journal": root / "journal.sqlite",
                    "evidence": root / "evidence",
                }
            ),
            "console": config.console.model_copy(update={"users_file": root / "users.yaml"}),
        }
    )
    if config.jt808 is not None:  # the JT/T 808 trucks' listener on loopback, on a free port
        jt808 = config.jt808.model_copy(update={"host": "127.0.0.1", "port": free_port()})
        config = config.model_copy(update={"jt808": jt808})
    feed = config.evidence.feed.model_copy(update={"mqtt": EvidenceMqttFeed()})
    config = config.model_copy(
        update={"evidence": config.evidence.model_copy(update={"feed": feed})}
    )
    config, broker = start_embedded_broker(config)
    options = PipelineOptions(rules_dir=demo_rules(root), loop_video=True)
    pipeline = Pipeline(config, options)
    console = start_console(
        pipeline, args.config, options.rules_dir, args.http_host, args.http_port
    )
    password = admin_password(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        pipeline.start(wait_s=10)
        print(
            f"demo: site {config.site.id}, broker {broker.url}, {len(pipeline.cameras)} camera(s),"
            f" {len(pipeline.rules.rules)} rules from {options.rules_dir}"
        )
        print(f"demo: console at {console.url}/ (log in as admin, one-time password {password})")
        started = time.monotonic()
        last: dict[str, float] = {}
        ticker = threading.Thread(
            target=lambda: [
                print(
                    f"[{time.monotonic() - started:4.0f} s] "
                    + status_line(
                        pipeline.stage_counters(), last, 2.0, bool(pipeline.feed.targets)
                    ),
                    flush=True,
                )
                for _ in iter(lambda: stop.wait(2.0), True)
            ],
            daemon=True,
        )
        ticker.start()
        rounds = 0
        while not stop.is_set():
            publish_footage_telemetry(  # the car-park drone's flight, while its video plays
                config,
                broker.url,
                args.duration / args.speed + (0 if args.keep_running else 90),
                stop,
                client_id=f"{config.broker.client_id}-footage-{rounds}",
            )
            messages = build_scenario(
                config,
                duration_s=args.duration,
                seed=1 + rounds,
                start=scenario_start(args.duration, args.speed),
                faults=True,
            )
            messages, trucks = jt808_reports(config, messages)
            player = Player(config, trucks, speed=args.speed, stop=stop).start() if trucks else None
            report = publish_scenario(
                messages,
                url=broker.url,
                client_id=f"{config.broker.client_id}-simulate",
                speed=args.speed,
                stop=stop,
            )
            rounds += 1
            print(f"simulate: sent {report.sent}, acknowledged {report.acked}")
            if player is not None:
                player.join()
                print(f"simulate: {player.summary()}")
            if not args.keep_running:
                break
        _settle(pipeline, stop)
    finally:
        stop.set()
        pipeline.stop()
        console.stop()
        broker.stop()
    return _summary(config)


def admin_password(config: SiteConfig) -> str:
    """A fresh admin for this demo run, with a random password printed once (the demo's users
    file is new each run; a real box adds its users with `streetwatch users add`)."""
    assert config.console.users_file is not None
    store = UserStore(config.console.users_file)
    password = secrets.token_urlsafe(12)
    store.add("admin", "admin", password)
    return password


def _settle(pipeline: Pipeline, stop: threading.Event, timeout_s: float = 60.0) -> None:
    """Let the pipeline analyse what arrived and package what opened (post-roll included)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        opened = pipeline.cases.list(["opened"])
        undelivered = pipeline.cases.list(["evidence_complete"])
        if pipeline.idle and not opened and not undelivered:
            return
        time.sleep(0.5)


def _summary(config) -> int:
    paths = evidence_paths(config)
    store = CaseStore(paths.cases)
    verifier = Verifier.from_pem(paths.public_key) if paths.public_key.exists() else None
    cases = store.list()
    print()
    print(
        f"{'case':<31} {'rule':<28} {'where':<16} {'party':<12} {'state':<18} "
        f"{'disposed':<12} evidence"
    )
    failures = 0
    for case in cases:
        violation = store.violation(case.case_id)
        sensor = any(o.kind.value == "metric" for o in violation.observations)
        where = violation.zone_id or (violation.devices[0] if sensor else violation.subject_id)
        verdict = "not built"
        party = party_label(Path(case.package)) if case.package else "-"
        if case.package:
            report, _ = verify_package(Path(case.package), verifier)
            verdict = "verified" if report.ok else f"FAILED: {report.findings[0]}"
            failures += not report.ok
        print(
            f"{case.case_id:<31} {case.rule_id:<28} {where:<16} {party:<12} "
            f"{case.state.value:<18} {disposal_label(case):<12} {verdict}"
        )
        if case.package:
            print(f"{'':<31} {case.package}")
    figures = case_stats(store)["total"]
    store.close()
    chain = verify_chain(paths.root, verifier)
    print()
    print(f"{len(cases)} case(s); journal {config.storage.journal}")
    print(loop_line(figures))
    print(
        f"evidence chain under {paths.root}: {chain.packages} package(s), "
        + ("verified" if chain.ok else f"{len(chain.findings)} finding(s): {chain.findings[0]}")
    )
    print(
        "check it yourself: .venv/bin/streetwatch evidence verify "
        f"--public-key {paths.public_key} {paths.root}"
    )
    return 1 if failures or not chain.ok else 0


def disposal_label(case: Case) -> str:
    """`cleared 3m20s` (by the box; `!` past its deadline), `escalated 2` or `-`."""
    if case.disposal_s is not None:
        late = case.deadline is not None and case.cleared_at is not None
        late = late and case.cleared_at > case.deadline  # type: ignore[operator]
        minutes, seconds = divmod(round(case.disposal_s), 60)
        return f"cleared {minutes}m{seconds:02d}s" + ("!" if late else "")
    if case.escalation_level:
        return f"escalated {case.escalation_level}"
    return "-"


def loop_line(total: dict) -> str:
    """The figures the field reports, for the cases of this run."""
    p50 = total.get("disposal_p50_s")
    share = total.get("within_deadline_share")
    return (
        f"cleared by the box {total['cleared_by_box']}, rectified {total['rectified']}; "
        f"disposal p50 {'-' if p50 is None else f'{p50:.0f} s'}; "
        f"within deadline {'-' if share is None else f'{share:.0%}'} "
        f"of {total['with_deadline']} with a deadline; escalated {total['escalated_cases']}; "
        f"repeats {total['repeats']}"
    )


def party_label(package: Path) -> str:
    """Who the case names, from its sealed manifest: a merchant's id or a vehicle's plate."""
    try:
        party = json.loads((package / "manifest.json").read_text(encoding="utf-8")).get("party")
    except (OSError, ValueError):
        return "?"
    if not isinstance(party, dict):
        return "-"
    if party.get("kind") == "vehicle":
        return party.get("plate") or "vehicle"
    return str(party.get("id") or "-")


if __name__ == "__main__":
    sys.exit(main())
