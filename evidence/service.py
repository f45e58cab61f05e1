"""Violation → case → package → evidence_complete, idempotent and resumable after a crash."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from evidence.builder import EvidenceBuilder
from evidence.cases import Case, CaseStore, State
from rules.violation import Violation

log = logging.getLogger(__name__)


class EvidenceService:
    """Glue for `streetwatch run`: `handle(violation)` once its post-roll has been recorded
    (`EvidenceBuilder.ready_at`), `resume()` at start-up."""

    def __init__(self, builder: EvidenceBuilder, store: CaseStore) -> None:
        self.builder = builder
        self.store = store

    def handle(self, violation: Violation, now: datetime | None = None) -> Case:
        case, _new = self.store.open(violation, now, case_id=self.builder.case_id(violation))
        if case.state is not State.OPENED:
            return case
        result = self.builder.build_result(violation)
        manifest = result.path / "manifest.json"
        sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
        return self.store.transition(
            case.case_id,
            State.EVIDENCE_COMPLETE,
            datetime.now(UTC),
            {"package": str(result.path), "manifest_sha256": sha},
            package=str(result.path),
            manifest_sha256=sha,
        )

    def resume(self) -> list[Case]:
        """Cases opened before a crash but without their evidence: build (or find) it now."""
        done = []
        for case in self.store.list([State.OPENED]):
            log.info("evidence: resuming case %s", case.case_id)
            done.append(self.handle(self.store.violation(case.case_id)))
        return done
