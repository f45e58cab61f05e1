"""The JT/T 808 listener's journal writer: one thread committing what the connections hand it,
many connections' reports per transaction, then calling each one back so that it acknowledges
(0x8001) only what is committed. A failed commit (a full disk, say) holds every ack until a
retry succeeds: the terminals keep their reports and resend them."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ingest.diskspace import DiskGuard
from ingest.journal import DeadLetter, Journal
from ingest.readings import Reading
from ingest.stats import IngestStats

log = logging.getLogger("streetwatch.jt808")


@dataclass(slots=True)
class Job:
    readings: list[Reading]
    dead: list[DeadLetter]
    done: Callable[[Job], None] | None = None
    """Called (in the writer thread) once committed."""
    prepare: Callable[[], tuple[list[Reading], list[DeadLetter]]] | None = None
    """Decodes the readings and dead letters here, in the writer thread, before the commit:
    the listener's event loop then only moves bytes (one thread decoding while the other
    commits was measured slower: they take the GIL from each other on every SQLite step)."""


def _now() -> datetime:
    return datetime.now(UTC)


class JournalWriter:
    def __init__(
        self,
        journal: Journal,
        stats: IngestStats,
        batch_size: int,
        disk: DiskGuard | None = None,
    ) -> None:
        self.journal = journal
        self.stats = stats
        self.batch_size = batch_size
        self.disk = disk
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sw-jt808-journal", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            size = self._prepared(first)
            stopping = False
            while size < self.batch_size:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
                size += self._prepared(job)
            self._commit(batch)
            if stopping:
                return

    def _prepared(self, job: Job) -> int:
        if job.prepare is not None:
            try:
                job.readings, job.dead = job.prepare()
            except Exception as exc:  # a decoder bug: answered as a message error, never lost
                log.exception("decoding JT/T 808 reports failed")
                detail = f"{type(exc).__name__}: {exc}"
                job.readings = []
                job.dead = [DeadLetter.of("jt808", b"", "decode_error", detail, _now(), 0)]
            job.prepare = None
        return len(job.readings) + len(job.dead)

    def _commit(self, batch: list[Job]) -> None:
        readings = [r for job in batch for r in job.readings]
        dead = [d for job in batch for d in job.dead]
        while True:
            try:
                if self.disk is not None:
                    self.disk.check("jt808")
                result = self.journal.write(readings, dead)
                break
            except Exception as exc:
                if self.disk is not None and self.disk.failed("jt808", exc):
                    log.error("journal write failed, the disk is full (%s): holding acks", exc)
                else:
                    log.exception("journal write failed; holding %d acks", len(batch))
                self.stats.inc("journal_errors")
                time.sleep(1.0)
        self.stats.inc("commits")
        self.stats.inc("readings", result.inserted)
        self.stats.inc("duplicates", result.duplicates)
        for reason, count in result.dead_reasons.items():
            self.stats.dead_letter(reason, count)
        for job in batch:
            if job.done is not None:
                job.done(job)
