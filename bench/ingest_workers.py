"""Ingestion beyond one core: 1 and 2 ingest worker processes (`streetwatch run
--ingest-workers N`) draining the same backlog from a real loopback Mosquitto, QoS 1.

The publisher first fills the workers' persistent sessions while they are away (GPS JSON
round-robin over 16 devices), then the workers start and drain it: the consumers' own speed,
with no publisher on the cores. Modes:
- 1 worker: one process, all devices.
- 2 workers, device partitions (the default of --ingest-workers): each owns half the devices.
- 2 workers, one shared subscription (`broker.shared_group`): the broker splits messages.
- 2 workers, one journal file: both partitions write the same SQLite journal (its lock
  serialises the commits).
Modes alternate over `--rounds` rounds and the best run of each is reported. Rates are over
the middle 80 % of the backlog as committed in the workers' journals; then the
time until the run's reader has all of it in the main journal (what the analysis reads).
`limit_one_process_per_s` is the 1-worker figure measured in the same run.

    .venv/bin/python bench/ingest_workers.py [--messages 100000] [--rounds 2]

Last lines: `limit_one_process_per_s: N /s`, `ratio_to_one_process: N`, then
`readings_per_s: N /s` (2 workers, device partitions).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEVICES = [f"gps-{i:02d}" for i in range(16)]
WINDOW = 1000


def publish(port: int, count: int) -> None:
    """paho v5 at QoS 1 with a window of WINDOW unacknowledged messages, devices in turn."""
    import paho.mqtt.client as mqtt

    window = threading.BoundedSemaphore(WINDOW)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(0)
    client.on_publish = lambda *_: window.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    topics = [f"streetwatch/bench-site/{d}/gps" for d in DEVICES]
    for seq in range(count):
        window.acquire()
        body = (
            f'{{"ts":{time.time():.6f},"lat":{31.19 + (seq % 1000) * 1e-5:.6f},'
            f'"lon":121.43,"speed_kmh":32.5,"heading":90,"hdop":0.9,"sats":14,"seq":{seq}}}'
        )
        client.publish(topics[seq % len(topics)], body, qos=1)
    for _ in range(WINDOW):
        window.acquire(timeout=120)
    client.disconnect()
    client.loop_stop()


def committed(paths: list[Path]) -> int:
    total = 0
    for path in set(paths):
        if not path.exists():
            continue
        with contextlib.suppress(sqlite3.Error):
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                total += db.execute("SELECT count(*) FROM readings").fetchone()[0]
            finally:
                db.close()
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--publish-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_port:
        publish(args.publish_port, args.messages)
        return

    import psutil

    from ingest.config import SiteConfig
    from ingest.journal import Journal
    from streetwatch.ingest_workers import IngestWorkers
    from streetwatch.localbroker import Mosquitto

    work = Path(tempfile.mkdtemp(prefix="sw-bench-workers-"))
    broker = Mosquitto(work / "mosquitto").start()
    mosq = psutil.Process(broker.process.pid)

    def cpu(proc: psutil.Process) -> float:
        with contextlib.suppress(psutil.NoSuchProcess):
            return sum(proc.cpu_times()[:2])
        return 0.0

    def run(name: str, count: int, shared: bool = False, one_journal: bool = False) -> dict:
        root = work / name
        site = {
            "site": {"id": "bench-site"},
            "broker": {"url": broker.url, "client_id": name, "receive_maximum": 5000},
            "ingest": {"batch_size": 2000, "flush_interval_ms": 20},
            "storage": {"root": str(root)},
            "devices": [{"id": d, "kind": "gps"} for d in DEVICES],
        }
        if shared:
            site["broker"]["shared_group"] = f"{name}-group"
        config = SiteConfig.model_validate(site)
        journal = Journal(root / "journal.sqlite")
        paths = [root / "ingest-workers" / "journal.sqlite"] * count if one_journal else None
        workers = IngestWorkers(config, count, journal, paths)
        workers.start(wait_s=60)  # the sessions and their subscriptions
        workers.stop()
        publisher = [sys.executable, __file__, "--messages", str(args.messages)]
        subprocess.run([*publisher, "--publish-port", str(broker.port)], check=True)
        workers = IngestWorkers(config, count, journal, paths)
        paths = workers.paths
        m0 = cpu(mosq)
        workers.start(wait_s=60)
        procs = [psutil.Process(p.pid) for p in workers._procs if p is not None]
        used = {p.pid: 0.0 for p in procs}
        marks: dict[str, float] = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            for proc in procs:
                used[proc.pid] = max(used[proc.pid], cpu(proc))
            done = committed(paths)
            now = time.monotonic()
            if done >= args.messages * 0.1:
                marks.setdefault("lo", now)
                marks.setdefault("n_lo", done)
            if done >= args.messages * 0.9:
                marks.setdefault("hi", now)
                marks.setdefault("n_hi", done)
            if done >= args.messages:
                marks["end"] = now
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"{name}: {committed(paths)} of {args.messages} after 240 s")
        while journal.count() < args.messages and time.monotonic() < deadline:
            time.sleep(0.02)
        merged = time.monotonic()
        broker_cpu = cpu(mosq) - m0
        workers.stop()
        stored = journal.count()
        journal.close()
        rate = (marks["n_hi"] - marks["n_lo"]) / (marks["hi"] - marks["lo"])
        return {
            "rate": rate,
            "merge_lag_s": merged - marks["end"],
            "workers_cpu": [u / args.messages * 1e6 for u in used.values()],
            "broker_cpu": broker_cpu / args.messages * 1e6,
            "lost": args.messages - stored,
        }

    modes = {
        "1 worker": lambda tag: run(f"one{tag}", 1),
        "2 workers, device partitions": lambda tag: run(f"partitions{tag}", 2),
        "2 workers, shared subscription": lambda tag: run(f"shared{tag}", 2, shared=True),
        "2 workers, one journal file": lambda tag: run(f"onefile{tag}", 2, one_journal=True),
    }
    runs: dict[str, list[dict]] = {name: [] for name in modes}
    for round_ in range(args.rounds):  # interleaved: a busy spell slows every mode alike
        for name, mode in modes.items():
            runs[name].append(mode(round_))
    results = {name: max(rs, key=lambda r: r["rate"]) for name, rs in runs.items()}
    broker.stop()
    shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {os.cpu_count()} cores; {args.messages} messages over {len(DEVICES)} devices")
    base = results["1 worker"]["rate"]
    for name, rs in runs.items():
        rates = ", ".join(f"{r['rate']:.0f}" for r in rs)
        print(f"{name}: runs {rates} /s")
    for name, r in results.items():
        workers_cpu = " + ".join(f"{c:.0f}" for c in r["workers_cpu"])
        print(
            f"{name}: {r['rate']:.0f} /s ({r['rate'] / base:.2f}x), main journal complete"
            f" {r['merge_lag_s']:.2f} s after the workers'; cpu µs a message: workers"
            f" {workers_cpu}, mosquitto {r['broker_cpu']:.0f}; lost {r['lost']}"
        )
    best = results["2 workers, device partitions"]["rate"]
    print(f"limit_one_process_per_s: {base:.0f} /s")
    print(f"ratio_to_one_process: {best / base:.2f}")
    print(f"readings_per_s: {best:.0f} /s")


if __name__ == "__main__":
    main()
