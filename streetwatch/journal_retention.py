"""How far the box's journal may be pruned, and when.

`storage.journal_keep_days` (default 30) bounds the journal on a box that runs for years. A row
goes only when every reader is done with it: older than that by its receipt time (observations:
by their event time), analysed (at or below the analysis checkpoint), shipped to TimescaleDB
when a sink is configured (at or below the sink's committed cursor as it was one pass earlier;
before the sink has connected once, nothing goes), and older by a day's margin than every case
whose package, or "after" package, is still to be built (those read the sensor history around
the case). A sink down for longer than the keep time holds the journal back rather than losing
rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ingest.journal import Journal
from ingest.journal_prune import Pruned

log = logging.getLogger(__name__)

DAY_S = 86_400.0
PROTECT_MARGIN_S = DAY_S
"""Kept before the oldest case still to package: its sensor history window and an episode's
start lie before the case opened."""


@dataclass(frozen=True, slots=True)
class PruneBounds:
    before: float
    """Epoch seconds: rows received (observations: seen) before this may go."""
    readings_upto: int
    observations_upto: int | None
    """None: no bound (no sink reads observations)."""


class JournalRetention:
    """Called from the analysis thread after a checkpoint (`maybe_prune`)."""

    def __init__(
        self,
        journal: Journal,
        keep_days: float | None,
        *,
        pending_since: Callable[[], Iterable[float]],
        sink: Any = None,
        every_s: float | None = None,
        batch: int = 5000,
        max_batches: int = 20,
    ) -> None:
        """`pending_since`: the opening times (epoch seconds) of cases whose packages are still
        to be built; `sink`: the TimeseriesSink, whose sources' cursors say what was shipped;
        `every_s`: how often to prune (default: every 5 minutes, or a tenth of the keep time
        when that is shorter)."""
        self.journal = journal
        self.keep_s = None if keep_days is None else keep_days * DAY_S
        self.pending_since = pending_since
        self.sink = sink
        if every_s is None:
            every_s = 300.0 if self.keep_s is None else min(300.0, self.keep_s / 10)
        self.every_s = every_s
        self.batch = batch
        self.max_batches = max_batches
        self.pruned = Pruned()
        self._last = -float("inf")
        self._shipped_before: dict[str, int] = {}
        """The sink's cursors at the previous pass: only those count (see `bounds`)."""

    def bounds(self, now: float, analysed: int) -> PruneBounds | None:
        """What may go now, or None when nothing may. What the sink shipped counts from the
        pass after the one that saw it shipped: with asynchronous commit a database crash may
        lose the last fraction of a second of commits, cursor moves included, and the sink
        then ships those rows again, so they must still be here."""
        if self.keep_s is None:
            return None
        before = now - self.keep_s
        for opened in self.pending_since():
            before = min(before, opened - PROTECT_MARGIN_S)
        readings_upto, observations_upto = analysed, None
        if self.sink is not None:
            now_shipped = {source.name: source.cursor for source in self.sink.sources}
            shipped = {
                name: min(seq, self._shipped_before.get(name, 0))
                for name, seq in now_shipped.items()
            }
            self._shipped_before = now_shipped
            readings_upto = min(analysed, shipped.get("readings", 0))
            observations_upto = shipped.get("observations", 0)
        return PruneBounds(before, readings_upto, observations_upto)

    def prune(self, now: float, analysed: int) -> Pruned:
        """Up to `max_batches` short transactions of at most `batch` rows a table, so the
        ingest path waits for the journal's lock no longer than one batch at a time."""
        done = Pruned()
        bounds = self.bounds(now, analysed)
        if bounds is None:
            return done
        for _ in range(self.max_batches):
            step = self.journal.prune(
                bounds.before,
                readings_upto=bounds.readings_upto,
                observations_upto=bounds.observations_upto,
                limit=self.batch,
            )
            done.add(step)
            if max(step.readings, step.observations, step.dead_letters) < self.batch:
                break
        self.pruned.add(done)
        if done:
            log.info(
                "journal pruned: %d readings, %d snapshots, %d observations, %d dead letters"
                " received before %s",
                done.readings,
                done.snapshots,
                done.observations,
                done.dead_letters,
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(bounds.before)),
            )
        return done

    def maybe_prune(self, analysed: int) -> Pruned | None:
        """`prune` at most once every `every_s` (monotonic time); None when not due."""
        if self.keep_s is None or time.monotonic() - self._last < self.every_s:
            return None
        self._last = time.monotonic()
        return self.prune(time.time(), analysed)
