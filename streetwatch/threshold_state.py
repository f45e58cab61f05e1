"""The rules' threshold episodes across a restart.

Saved beside the sensor detectors' state at each analysis checkpoint (before the journal cursor
moves) and loaded at start: a bin over its threshold when the box stopped is still in the same
episode after it, so the case opened for it is found again and its end still clears it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from evidence.fsutil import write_atomic
from rules.thresholds import Thresholds

log = logging.getLogger(__name__)


def save_thresholds(thresholds: Thresholds, path: Path) -> None:
    write_atomic(path, json.dumps(thresholds.snapshot()).encode())


def load_thresholds(thresholds: Thresholds, path: Path) -> bool:
    """False when there is no saved state, or (logged, counted as `restore_failed`) a bad one:
    the episodes then start afresh from the next samples."""
    try:
        thresholds.restore(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return False
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("threshold state %s not restored: %s", path, exc)
        thresholds.stats["restore_failed"] += 1
        return False
    return True
