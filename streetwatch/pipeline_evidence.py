"""The pipeline's evidence stage: opened cases packaged once their post-roll is recorded,
clearances recorded on the analysis thread and their "after" packages built on the evidence
thread, repeats linked. A part of `Pipeline`, kept in its own module."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from evidence.cases import Case, State

if TYPE_CHECKING:
    from evidence.cases import CaseStore
    from evidence.feed import CaseFeed
    from evidence.service import EvidenceService
    from ingest.diskspace import DiskGuard
    from rules.clearance import Clearance
    from rules.violation import Violation

log = logging.getLogger("streetwatch.pipeline")


class EvidenceStage:
    """Mixed into `Pipeline`, which provides the stores, the builder, the cameras, the disk
    guard, the stop event and `counters`."""

    cases: CaseStore
    evidence: EvidenceService
    feed: CaseFeed
    disk: DiskGuard
    builder: Any
    cameras: dict[str, Any]
    counters: Counter[str]
    _stop: threading.Event

    # ---- evidence: opened cases → signed packages ------------------------------------------

    def _package(self) -> None:
        while True:
            stopping = self._stop.is_set()
            built = 0
            for case in self.cases.list([State.OPENED]):
                violation = self.cases.violation(case.case_id)
                if not stopping and not self._post_roll_recorded(violation):
                    continue
                try:
                    self.evidence.handle(violation)
                except Exception as exc:
                    self.counters["evidence_failures"] += 1
                    if self.disk.failed("evidence", exc):
                        log.error("evidence for case %s waits: disk full (%s)", case.case_id, exc)
                        break
                    log.exception("evidence for case %s failed; retrying later", case.case_id)
                    continue
                self.counters["packages"] += 1
                self.feed.wake()
                built += 1
            built += self._follow_ups(stopping)
            if stopping:
                return
            try:
                self.counters["escalations"] += len(self.evidence.tick()[0])
            except Exception as exc:
                self.counters["evidence_failures"] += 1
                if not self.disk.failed("evidence", exc):
                    log.exception("escalation and retention check failed; retrying later")
            if not built:
                self._stop.wait(0.5)

    def _pending_since(self) -> list[float]:
        """When each case still to package (or to follow up) opened: the journal keeps the
        sensor history around them (streetwatch.journal_retention)."""
        pending = [case.opened_at.timestamp() for case in self.cases.list([State.OPENED])]
        for case_id in self.evidence.followups.pending():
            case = self.cases.find(case_id)
            if case is not None:
                pending.append(case.opened_at.timestamp())
        return pending

    def _post_roll_recorded(self, violation: Violation) -> bool:
        if not any(device in self.cameras for device in violation.devices):
            return True
        return datetime.now(UTC) >= self.builder.ready_at(violation)

    # ---- clearances ------------------------------------------------------------------------

    def _clear(self, clearances: list[Clearance]) -> None:
        """On the analysis thread, before the checkpoint: each clearance's `cleared` event is
        durable at once; its after package follows on the evidence thread (`_follow_ups`)."""
        for clearance in clearances:
            if self.evidence.clear(clearance) is not None:
                self.counters["cases_cleared"] += 1

    def _link_repeat(self, case: Case, violation: Violation) -> None:
        if self.evidence.followups.link_repeat(case, violation) is not None:
            self.counters["repeats"] += 1

    def _follow_ups(self, stopping: bool) -> int:
        """After packages of cleared cases whose own package exists (a camera's once its
        post-roll after the clearance is recorded; all of them when stopping)."""
        built = 0
        for case_id in self.evidence.followups.pending():
            if not stopping and not self.evidence.followups.ready(case_id):
                continue
            try:
                result = self.evidence.follow_up(case_id)
            except Exception as exc:
                self.counters["evidence_failures"] += 1
                if self.disk.failed("evidence", exc):
                    log.error("follow-up of case %s waits: disk full (%s)", case_id, exc)
                    break
                log.exception("follow-up of case %s failed; retrying later", case_id)
                continue
            if result is not None:
                self.counters["follow_ups"] += 1
                built += 1
        return built
