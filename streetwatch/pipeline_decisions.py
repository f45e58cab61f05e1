"""The pipeline's decisions stage: the case system's decisions that arrived over MQTT (journaled
before the ack) applied to the case store on the analysis thread. A part of `Pipeline`, kept
in its own module."""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError

from evidence.decisions import INVALID, NOT_ACKNOWLEDGED, Decision, Refused, apply_decision
from ingest import failpoints

if TYPE_CHECKING:
    from evidence.cases import CaseStore
    from ingest.journal import Journal

log = logging.getLogger("streetwatch.pipeline")


class DecisionsStage:
    """Mixed into `Pipeline`, which provides `journal`, `cases` and `counters`."""

    journal: Journal
    cases: CaseStore
    counters: Counter[str]

    DECISION_ACK_WAIT_S = 3600.0
    """How long after its receipt a decision that came before the box recorded the case
    system's acknowledgement of its case (refused as not_acknowledged) is still retried."""
    DECISION_RETRY_MAX_S = 30.0
    """The longest pause between two tries of such a decision (1 s, 2 s, 4 s ... up to this)."""

    def _apply_decisions(self, limit: int = 100, now: datetime | None = None) -> int:
        """On the analysis thread: the case system's decisions journaled from MQTT → the case
        store, in the order they arrived; each is then settled in the journal. Applying is
        idempotent on the decision's key, so a crash between applying and settling applies
        nothing twice. A refused decision (unknown case, a transition the life cycle does not
        allow, a bad body) is logged and counted by reason, never retried, except one that
        came before the box recorded the case system's acknowledgement (the feed's answer may
        still be on its way): it stays pending and is tried again with a growing pause, for
        up to DECISION_ACK_WAIT_S after its receipt, then refused (logged as an error, counted
        in decisions_refused.not_acknowledged and decisions_expired); the case's later decisions
        wait behind it, so they still apply in the order they came. `now`: the wall clock
        (tests). Returns how many were settled."""
        clock = now or datetime.now(UTC)
        pending = self.journal.pending_decisions(limit, now=clock)
        settled = 0
        waiting: set[str] = set()  # cases with a decision deferred now: the later ones wait
        for row in pending:
            if row.case_id in waiting:
                continue
            outcome, detail = "refused", ""
            try:
                decision = Decision.model_validate(row.body)
                applied = apply_decision(
                    self.cases, row.case_id, decision, row.key, "mqtt", now=now
                )
            except ValidationError as exc:
                reason, detail = INVALID, "; ".join(e["msg"] for e in exc.errors())[:300]
            except Refused as exc:
                reason, detail = exc.reason, exc.detail
                if reason == NOT_ACKNOWLEDGED:
                    waited = (clock - row.received_ts).total_seconds()
                    if waited < self.DECISION_ACK_WAIT_S:
                        pause = min(self.DECISION_RETRY_MAX_S, 2.0**row.attempts)
                        self.counters["decisions_deferred"] += 1
                        if row.attempts == 0:
                            log.info(
                                "decision for case %s (key %s) waits for the case system's"
                                " acknowledgement: %s; retrying for up to %.0f s",
                                row.case_id,
                                row.key,
                                detail,
                                self.DECISION_ACK_WAIT_S,
                            )
                        self.journal.defer_decision(
                            row.seq, clock + timedelta(seconds=pause), f"{reason}: {detail}"
                        )
                        waiting.add(row.case_id)
                        continue
                    self.counters["decisions_expired"] += 1
                    log.error(
                        "decision for case %s (key %s) given up: still not acknowledged %.0f s"
                        " after its receipt (%d tries)",
                        row.case_id,
                        row.key,
                        waited,
                        row.attempts + 1,
                    )
                    detail = f"{detail} (given up after {waited:.0f} s, {row.attempts + 1} tries)"
            except sqlite3.Error:
                raise  # the case store's trouble: the pass is retried, the decision stays
            except Exception as exc:  # a bug must not stop the analysis thread
                log.exception("decision %s for case %s failed", row.key, row.case_id)
                reason, detail = "internal_error", repr(exc)[:300]
            else:
                outcome = "replayed" if applied.replay else "applied"
                self.counters[f"decisions_{outcome}"] += 1
                result = applied.result
                if not applied.replay and result["review"] == "rejected":
                    self.counters[f"review_rejections.{result['rule_id']}"] += 1
                log.info(
                    "decision %s on case %s (key %s) %s: now %s",
                    result["event"],
                    row.case_id,
                    row.key,
                    outcome,
                    result["state"],
                )
            if outcome == "refused":
                self.counters["decisions_refused"] += 1
                self.counters[f"decisions_refused.{reason}"] += 1
                log.warning("decision for case %s refused (%s): %s", row.case_id, reason, detail)
                detail = f"{reason}: {detail}"
            failpoints.reach("decisions.applied")
            self.journal.settle_decision(row.seq, outcome, detail)
            settled += 1
        return settled
