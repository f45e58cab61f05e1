"""Named crash points for the fault suite.

`STREETWATCH_FAILPOINTS="journal.committed=3,feed.sent=1"` makes the process SIGKILL itself the
3rd time it reaches `journal.committed` (or the 1st time it reaches `feed.sent`): no drain, no
checkpoint, exactly what a power cut leaves behind. Unset, `reach` is one dict lookup.
Points: journal.before_commit, journal.committed (before the MQTT acks), analysis.stored
(before the cursor checkpoint), evidence.collected/signed/pending/renamed/head (the package
commit's steps), feed.before_send, feed.sent (accepted, not yet marked delivered),
decisions.applied (a decision applied to the case store, not yet settled in the journal).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

ENV = "STREETWATCH_FAILPOINTS"
POINTS = (
    "journal.before_commit",
    "journal.committed",
    "analysis.stored",
    "evidence.collected",
    "evidence.signed",
    "evidence.pending",
    "evidence.renamed",
    "evidence.head",
    "feed.before_send",
    "feed.sent",
    "decisions.applied",
)

log = logging.getLogger(__name__)


def parse(spec: str) -> dict[str, int]:
    """`name=N,...` → {name: N}; unknown names and counts below 1 are a ValueError."""
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition("=")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown failpoint {name!r} (known: {', '.join(POINTS)})")
        try:
            armed[name] = int(count or "1")
        except ValueError:
            raise ValueError(f"{ENV}: {item!r} needs a whole count after '='") from None
        if armed[name] < 1:
            raise ValueError(f"{ENV}: {item!r} must count from 1")
    return armed


_armed = parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def reach(name: str) -> None:
    """Count a pass through `name`; SIGKILL this process on the armed pass."""
    if not _armed or name not in _armed:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] != _armed[name]:
            return
    log.critical("failpoint %s reached (pass %d): killing this process", name, _hits[name])
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)
