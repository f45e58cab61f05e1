"""`streetwatch run --ingest-workers N`: MQTT ingestion in N processes, beyond one core.

Each worker process runs an MqttIngestor of its own on a share of the site's devices (the
broker's device partitions, composed with the box's own partition if it has one), under a
client id and a persistent session of its own, into a journal of its own: it acknowledges
what it received only after its own commit, as the single-process ingestor does. The run
process supervises them (a worker that dies is started again; its session brings back what
it had not acknowledged) and reads their journals into the main journal
(ingest/journal_merge.py), where the analysis, the evidence, the console and the sink read it.
A site whose broker section names a `shared_group` keeps it: its workers then split messages
rather than devices.

Workers die with the run process (PR_SET_PDEATHSIG on Linux, and a check of the parent).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from ingest.config import SiteConfig
from ingest.config.broker import Partition
from ingest.journal import Journal
from ingest.journal_merge import WorkerJournals
from ingest.mqtt_consumer import BrokerRefused
from streetwatch.journal_retention import DAY_S

log = logging.getLogger("streetwatch.ingest_workers")

WORKER_DIR = "ingest-workers"
STATUS_EVERY_S = 0.5
RESTART_DELAY_S = 1.0
PRUNE_EVERY_S = 300.0


def worker_config(config: SiteConfig, index: int, count: int) -> SiteConfig:
    """The site as worker `index` of `count` sees it: its share of the devices, its client id
    and its journal."""
    broker = config.broker
    update: dict[str, object] = {"client_id": f"{broker.client_id}-ingest{index}"}
    if broker.shared_group is None:
        box = broker.partition or Partition(index=0, count=1)
        # crc % (box.count * count) == box.index + box.count * index implies crc % box.count
        # == box.index: each of the box's devices goes to exactly one of its workers
        update["partition"] = Partition(
            index=box.index + box.count * index, count=box.count * count
        )
    root = Path(config.storage.root)
    storage = config.storage.model_copy(
        update={"journal": root / WORKER_DIR / f"journal-{index}.sqlite"}
    )
    return config.model_copy(
        update={"broker": broker.model_copy(update=update), "storage": storage}
    )


class _Connected:
    def __init__(self, workers: IngestWorkers) -> None:
        self._workers = workers

    def is_set(self) -> bool:
        statuses = self._workers.statuses()
        return len(statuses) == self._workers.count and all(
            s.get("subscribed") for s in statuses.values()
        )


class _Stats:
    def __init__(self, workers: IngestWorkers) -> None:
        self._workers = workers

    def snapshot(self) -> dict[str, int]:
        return self._workers.counters()

    def get(self, name: str) -> int:
        return self.snapshot().get(name, 0)


class IngestWorkers:
    """N ingest worker processes and the reader of their journals, with the MqttIngestor's
    face towards the pipeline: start, stop, connected, stats."""

    def __init__(
        self,
        config: SiteConfig,
        count: int,
        journal: Journal,
        journal_paths: list[Path] | None = None,
    ) -> None:
        """`journal_paths`: where each worker journals (default: one file each under the
        storage root's ingest-workers/; bench/ingest_workers.py also tries one shared file)."""
        self.config = config
        self.count = count
        self.dir = Path(config.storage.root) / WORKER_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.site_file = self.dir / "site.json"
        self.paths = [worker_config(config, i, count).storage.journal for i in range(count)]  # type: ignore[misc]
        self.reader = WorkerJournals(journal, self.paths)  # type: ignore[arg-type]
        self.connected = _Connected(self)
        self.stats = _Stats(self)
        self._procs: list[subprocess.Popen | None] = [None] * count
        self._started_at = [0.0] * count
        self._carried: Counter[str] = Counter()
        self._own: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        keep = config.storage.journal_keep_days
        self._keep_s = None if keep is None else keep * DAY_S
        self._pruned_at = time.monotonic()

    def _status_path(self, index: int) -> Path:
        return self.dir / f"status-{index}.json"

    # ---- life cycle ----

    def start(self, wait_s: float | None = 15.0) -> None:
        text = json.dumps(self.config.model_dump(mode="json"))
        temporary = self.site_file.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.chmod(0o600)
        os.replace(temporary, self.site_file)
        for index in range(self.count):
            self._status_path(index).unlink(missing_ok=True)
            self._spawn(index)
        self._thread = threading.Thread(target=self._run, name="sw-ingest-workers", daemon=True)
        self._thread.start()
        if wait_s is None:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.connected.is_set():
                log.info("%d ingest workers subscribed", self.count)
                return
            time.sleep(0.05)
        errors = [s.get("last_error") for s in self.statuses().values() if s.get("last_error")]
        raise BrokerRefused(
            errors[0] if errors else f"the ingest workers did not subscribe within {wait_s} s"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the workers (each commits and acknowledges what it holds), then read the last
        of their journals."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("ingest worker %d did not stop; killing it", proc.pid)
                proc.kill()
                proc.wait()
        try:
            while self.reader.merge_once():
                pass
        finally:
            self.reader.close()

    def _spawn(self, index: int) -> None:
        command = [sys.executable, "-m", "streetwatch.ingest_workers", "--site"]
        command += [str(self.site_file), "--index", str(index), "--count", str(self.count)]
        command += ["--parent", str(os.getpid()), "--journal", str(self.paths[index])]
        command += ["--log-level", logging.getLevelName(logging.getLogger().level)]
        with self._lock:
            self._procs[index] = subprocess.Popen(command)
        self._started_at[index] = time.monotonic()
        log.info(
            "ingest worker %d of %d started (pid %d)", index, self.count, self._procs[index].pid
        )

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._watch()
                counts = self.reader.merge_once()
                self._own["merged_readings"] += counts.readings
                self._prune()
            except Exception:
                self._own["merge_errors"] += 1
                log.exception("reading the ingest workers' journals failed; retrying")
                self._stopping.wait(1.0)
                continue
            if not counts:
                self._stopping.wait(0.02)

    def _prune(self) -> None:
        """What the main journal holds already and is older than `storage.journal_keep_days`
        leaves the worker journals, every PRUNE_EVERY_S."""
        if self._keep_s is None or time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        pruned = self.reader.prune(time.time() - self._keep_s)
        self._own["pruned_readings"] += pruned.readings

    def _watch(self) -> None:
        """Start again a worker that exited (its session redelivers what it had not acked)."""
        for index, proc in enumerate(self._procs):
            if proc is None or proc.poll() is None or self._stopping.is_set():
                continue
            if time.monotonic() - self._started_at[index] < RESTART_DELAY_S:
                continue
            log.warning(
                "ingest worker %d exited (code %s); starting it again", index, proc.returncode
            )
            last = self.statuses().get(index, {})
            self._carried.update(last.get("stats", {}))
            self._status_path(index).unlink(missing_ok=True)
            self._own["worker_restarts"] += 1
            self._spawn(index)

    # ---- status ----

    def statuses(self) -> dict[int, dict]:
        found = {}
        for index in range(self.count):
            with contextlib.suppress(OSError, ValueError):
                found[index] = json.loads(self._status_path(index).read_text())
        return found

    def counters(self) -> dict[str, int]:
        total: Counter[str] = Counter(self._carried)
        for status in self.statuses().values():
            total.update(status.get("stats", {}))
        total.update(self._own)
        total["ingest_workers"] = self.count
        return dict(total)


# ---- the worker process ----------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(0)  # the parent is already gone


def _write_status(path: Path, status: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(status))
    os.replace(temporary, path)


def worker_main(argv: list[str] | None = None) -> None:
    from ingest.diskspace import DiskGuard
    from ingest.mqtt_consumer import MqttIngestor
    from streetwatch.logs import setup_logging

    parser = argparse.ArgumentParser(prog="streetwatch.ingest_workers")
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--journal", type=Path)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    _die_with_parent(args.parent)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    site = SiteConfig.model_validate(json.loads(args.site.read_text()))
    config = worker_config(site, args.index, args.count)
    journal = Journal(args.journal or config.storage.journal)
    disk = DiskGuard(config.storage.root, config.storage.min_free_mb * 2**20)
    ingestor = MqttIngestor(config, journal, disk=disk, decisions=args.index == 0)
    status = args.site.parent / f"status-{args.index}.json"

    def report() -> None:
        _write_status(
            status,
            {
                "pid": os.getpid(),
                "subscribed": ingestor.subscribed.is_set(),
                "last_error": ingestor.last_error,
                "stats": ingestor.stats.snapshot(),
            },
        )

    ingestor.start(wait_s=None)
    while not stop.wait(STATUS_EVERY_S):
        report()
        if os.getppid() != args.parent:
            break
    ingestor.stop()
    report()
    journal.close()


if __name__ == "__main__":
    worker_main()
