"""The journal's retention in a real `streetwatch run` on a real Mosquitto: with a keep time of
17 seconds, a full bin's readings open their case, its package and its "after" package are
built from them, and only then do they leave the journal; the packages still verify."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from evidence.package import AFTER_SUFFIX
from streetwatch.localbroker import Mosquitto
from tests.runkit import (
    RunProcess,
    cases_of,
    journaled,
    publish,
    query,
    verify,
    wait_until,
)
from tests.streetwatch.binkit import bin_levels, bin_site

KEEP_DAYS = 0.0002  # 17.28 s
LEVELS = [50.0] * 5 + [95.0] * 35 + [30.0] * 5  # over 90 % from minute 5, emptied at minute 40


def test_readings_leave_the_journal_after_their_cases_are_packaged(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = bin_site(tmp_path, ("bin-full.yaml",), journal_keep_days=KEEP_DAYS)
    var = tmp_path / "var"
    run = RunProcess(config, mosquitto, tmp_path / "run.log", "--rules", str(tmp_path / "rules"))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    messages = bin_levels(start, LEVELS)
    assert publish(messages, mosquitto, speed=1200).acked == len(LEVELS)
    wait_until(
        lambda: any((var / "evidence").glob(f"*/*{AFTER_SUFFIX}/manifest.json")),
        60,
        "the case's package and its after package",
    )

    def all_pruned() -> bool:
        (stored,) = query(
            var / "journal.sqlite", "SELECT seq FROM sqlite_sequence WHERE name = 'readings'"
        )
        return stored[0] >= len(LEVELS) and journaled(var) == 0  # every one journaled, then gone

    wait_until(all_pruned, 90, "every reading journaled, then pruned from the journal")
    summary = run.terminate()
    assert summary["pipeline"]["journal_pruned_readings"] == len(LEVELS)
    (case_id,) = [c for c, _, _ in cases_of(var)]
    (package,) = (var / "evidence").glob(f"*/{case_id}")
    (series,) = json.loads((package / "data/metric_series.json").read_text())["series"]
    assert len(series["points"]) >= 30  # built from the journal before it was pruned
    assert query(var / "journal.sqlite", "SELECT count(*) FROM snapshots") == [(0,)]
    result = verify(config, var / "evidence")
    assert result.returncode == 0, result.stdout + result.stderr
