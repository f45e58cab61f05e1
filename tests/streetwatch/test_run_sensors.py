"""Environment sensors through a real `streetwatch run` and a real Mosquitto: a bin over 90 %
for 30 minutes (event time, published in seconds) opens one case, not one per reading, though
its level bounces inside the hysteresis band; emptying it clears the case with an "after"
package; the package holds the series and its plot; a bin sensor never heard is a case too;
undeclared metrics and impossible values are dead letters with their reasons. A box restarted
mid-episode keeps the episode: the bin emptied after the restart clears the case opened before."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from evidence.package import AFTER_SUFFIX
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.scenario_context import SimMessage
from tests.runkit import (
    RunProcess,
    all_analysed,
    cases_of,
    metric,
    publish,
    query,
    settled,
    verify,
    wait_until,
)
from tests.streetwatch.binkit import TOPIC, bin_levels, bin_site

LEVELS = [50.0] * 5 + [95, 85, 92, 88, 91, 82] * 6 + [30.0] * 10
"""One a minute: over 90 % at minute 5, then 82-95 % (inside the 80-90 band) until minute 41,
then emptied."""


def _messages(start: datetime) -> list[SimMessage]:
    topic = TOPIC
    out = []
    for minute, level in enumerate(LEVELS):
        ts = (start + timedelta(minutes=minute)).isoformat()
        out.append(
            SimMessage(minute * 60.0, topic, json.dumps({"ts": ts, "fill_pct": level}).encode())
        )
    bad = [b'{"ts": "%s", "fill_pct": 140}', b'{"ts": "%s", "nh3_ppm": 3}']
    for i, payload in enumerate(bad):
        out.append(SimMessage(30.0 + i, topic, payload % start.isoformat().encode()))
    return sorted(out, key=lambda m: m.at_s)


def test_a_full_bin_and_a_silent_one_become_cases_with_series_and_plot(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = bin_site(tmp_path, ("bin-full.yaml", "sensor-silent.yaml"))
    var = tmp_path / "var"
    run = RunProcess(config, mosquitto, tmp_path / "run.log", "--rules", str(tmp_path / "rules"))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    messages = _messages(start)
    report = publish(messages, mosquitto, speed=1200)
    assert report.acked == len(messages) and report.failed == 0
    wait_until(lambda: all_analysed(var, len(LEVELS)), 60, "every reading analysed")

    def packaged() -> bool:
        cases = cases_of(var)
        return len(cases) == 2 and all(state != "opened" for _, _, state in cases)

    wait_until(packaged, 60, "two cases, both packaged")
    rules = sorted(rule for _, rule, _ in cases_of(var))
    assert rules == ["bin-full", "sensor-silent"]  # one bin case for 36 minutes of readings
    wait_until(
        lambda: any((var / "evidence").glob(f"*/*{AFTER_SUFFIX}/manifest.json")),
        60,
        "the emptied bin's after package",
    )
    letters = query(var / "journal.sqlite", "SELECT reason FROM dead_letters ORDER BY reason")
    assert [r for (r,) in letters] == ["out_of_range", "unknown_metric"]
    summary = run.terminate()
    assert summary["pipeline"]["cases_opened"] == 2

    (bin_case,) = [c for c, rule, _ in cases_of(var) if rule == "bin-full"]
    (package,) = (var / "evidence").glob(f"*/{bin_case}")
    manifest = json.loads((package / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert {"data/metric_series.json", "media/bin-a/fill_pct.png"} <= listed
    (series,) = json.loads((package / "data/metric_series.json").read_text())["series"]
    assert series["episode"]["start"] == (start + timedelta(minutes=5)).isoformat()
    assert series["threshold"]["signature"] == "fill_pct>90~80"
    assert (package / "media/bin-a/fill_pct.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (after,) = (var / "evidence").glob(f"*/{bin_case}{AFTER_SUFFIX}")
    (after_series,) = json.loads((after / "data/metric_series.json").read_text())["series"]
    assert after_series["episode"]["cleared"] is True
    result = verify(config, var / "evidence")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_restart_mid_episode_keeps_it_and_the_emptied_bin_clears_the_case(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = bin_site(tmp_path, ("bin-full.yaml",))
    var = tmp_path / "var"
    rules = ("--rules", str(tmp_path / "rules"))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    full = [50.0] * 5 + [93.0] * 35  # over 90 % from minute 5: the case opens at minute 35
    run = RunProcess(config, mosquitto, tmp_path / "run-1.log", *rules)
    assert publish(bin_levels(start, full), mosquitto, speed=1200).acked == len(full)
    wait_until(lambda: all_analysed(var, len(full)) and len(cases_of(var)) == 1, 60, "the case")
    wait_until(lambda: settled(var), 60, "the case packaged")
    run.terminate()
    assert json.loads((var / "thresholds.state.json").read_text())["states"][0]["over"] is True

    http = free_port()
    run = RunProcess(config, mosquitto, tmp_path / "run-2.log", *rules, "--http-port", str(http))
    emptied = [94.0] * 5 + [30.0] * 3  # still full after the restart, then emptied
    assert publish(bin_levels(start, emptied, len(full)), mosquitto, speed=1200).acked == 8
    (bin_case,) = [c for c, _, _ in cases_of(var)]
    wait_until(
        lambda: any((var / "evidence").glob(f"*/{bin_case}{AFTER_SUFFIX}/manifest.json")),
        60,
        "the after package of the case opened before the restart",
    )
    wait_until(
        lambda: metric(http, "streetwatch_rules_thresholds_samples_total") == len(emptied),
        30,
        "the samples after the restart counted on /metrics (none replayed from before it)",
    )
    summary = run.terminate()
    assert summary["pipeline"].get("cases_opened", 0) == 0  # found again, not opened twice
    assert [rule for _, rule, _ in cases_of(var)] == ["bin-full"]
    (after,) = (var / "evidence").glob(f"*/{bin_case}{AFTER_SUFFIX}")
    (series,) = json.loads((after / "data/metric_series.json").read_text())["series"]
    assert series["episode"]["start"] == (start + timedelta(minutes=5)).isoformat()
    assert series["episode"]["cleared"] is True
