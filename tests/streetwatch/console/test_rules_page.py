"""The rules page's API on a real server, over a real (unstarted) pipeline: its engine fed real
observations, its rule watcher reading a real folder, its journal and recording replayed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from detectors.observation import Observation, ObservationKind
from ingest.config import load_config
from ingest.readings import GpsFix, Reading, Stream, TimeFlag
from streetwatch.console import backtest as backtest_module
from streetwatch.console import rules as rules_api
from streetwatch.console.backtest import recording_tail
from streetwatch.console.rules import condition_text, duration_text
from streetwatch.pipeline import Pipeline, PipelineOptions
from tests.conftest import site_dict
from tests.consolekit import serve_console

BIKE = """\
id: bike
name: Bicycle parked out of place
category: 市容管理/非机动车乱停放
condition:
  kind: presence
  subject: [bicycle, scooter]
  zone_kind: no_parking
  dwell: 60s
cooldown: 15m
"""
NIGHT = """\
rules:
  - id: night-bay
    name: Bay taken at night
    category: test/bay
    condition:
      kind: occupancy
      dwell: 5m
    schedule:
      windows: ["22:00-06:00"]
      weekdays: [mon, tue]
"""
BROKEN = """\
id: broken
name: A rule with a typo
category: test/typo
condition:
  kind: presence
  dwel: 10s
"""


@dataclass
class Console:
    server: object
    pipeline: Pipeline
    rules: Path
    tokens: dict[str, str]
    now: datetime

    def call(self, method: str, path: str, who: str = "ada", body: object = None):
        host, port = self.server.address  # type: ignore[attr-defined]
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{host}:{port}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.tokens[who]}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as err:
            text, status = err.read().decode(), err.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text


def _site(tmp_path: Path):
    doc = site_dict(tmp_path, "mqtt://127.0.0.1:1")
    camera = next(d for d in doc["devices"] if d["id"] == "cam-1")
    camera["zones"] = [{"id": "np-1", "kind": "no_parking", "polygon": [[0, 0], [9, 0], [9, 9]]}]
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(path)


def rules_console(tmp_path: Path, record: Path | None = None) -> Iterator[Console]:
    """A console over an unstarted pipeline with the rules bike and night-bay, and API tokens
    for ada (admin), otto (operator) and vera (viewer)."""
    config = _site(tmp_path)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "bike.yaml").write_text(BIKE, encoding="utf-8")
    (folder / "night.yaml").write_text(NIGHT, encoding="utf-8")
    options = PipelineOptions(rules_dir=folder, cameras=False, sink=False, record=record)
    pipeline = Pipeline(config, options)
    server = serve_console(config, tmp_path / "console", pipeline=pipeline, rules_dir=folder)
    tokens = {}
    for name, role in (("ada", "admin"), ("otto", "operator"), ("vera", "viewer")):
        _, tokens[name] = server.ctx.tokens.add(name, role)  # type: ignore[attr-defined]
    try:
        yield Console(server, pipeline, folder, tokens, datetime.now(UTC).replace(microsecond=0))
    finally:
        server.stop()
        if pipeline.recorder is not None:
            pipeline.recorder.close()
        pipeline.journal.close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    yield from rules_console(tmp_path)


def bike(sid: str, first: datetime, last: datetime, zone: str = "np-1") -> Observation:
    return Observation(
        kind=ObservationKind.PRESENCE,
        device_id="cam-1",
        subject="bicycle",
        subject_id=sid,
        first_seen=first,
        last_seen=last,
        zone_id=zone,
        zone_kind="no_parking",
    )


def stays(sid: str, first: datetime, seconds: int) -> list[Observation]:
    """A camera's reports of a bicycle standing `seconds` from `first`, every 2 s."""
    return [bike(sid, first, first + timedelta(seconds=t)) for t in range(0, seconds + 1, 2)]


def test_every_rule_is_listed_with_its_live_situations(console: Console) -> None:
    now = console.now
    engine = console.pipeline.engine
    for obs in stays("7", now - timedelta(seconds=30), 30) + stays("8", now, 0):
        engine.process(obs)
    status, view = console.call("GET", "/api/v1/rules", who="vera")
    assert status == 200, view
    assert view["running"] is True and view["rules_dir"] == str(console.rules)
    assert [r["id"] for r in view["rules"]] == ["bike", "night-bay"]
    rule, night = view["rules"]
    assert rule["file"] == "bike.yaml" and rule["line"] == 1
    assert rule["category"] == "市容管理/非机动车乱停放"
    assert rule["condition"] == "presence of bicycle, scooter in a no_parking zone for 1m"
    assert rule["dwell_s"] == 60 and rule["cooldown_s"] == 900
    assert rule["schedule"] == "always" and rule["schedule_active"] is True
    assert rule["situations_total"] == 2
    first, second = rule["situations"]
    assert (first["subject"], first["subject_id"], first["zone"], first["device"]) == (
        "bicycle",
        "7",
        "np-1",
        "cam-1",
    )
    assert first["dwell_s"] == 30 and first["needed_s"] == 60 and first["progress"] == 0.5
    assert datetime.fromisoformat(first["since"]) == now - timedelta(seconds=30)
    assert first["opened"] is False
    assert second["subject_id"] == "8" and second["progress"] == 0
    assert night["file"] == "night.yaml" and night["line"] == 2
    assert night["schedule"] == "22:00-06:00 on mon tue" and night["situations"] == []
    assert view["reload"]["ok"] is True and view["reload"]["problems"] == []


def test_a_situation_past_its_dwell_shows_as_opened(console: Console) -> None:
    engine = console.pipeline.engine
    for obs in stays("9", console.now - timedelta(seconds=90), 90):
        engine.process(obs)
    _, view = console.call("GET", "/api/v1/rules")
    (situation,) = view["rules"][0]["situations"]
    assert situation["opened"] is True and situation["progress"] == 1
    assert situation["dwell_s"] == 90


def test_a_broken_rule_file_shows_in_the_last_reload_with_file_and_line(console: Console) -> None:
    watcher = console.pipeline.watcher
    (console.rules / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    assert watcher.check() is False
    status, view = console.call("GET", "/api/v1/rules")
    assert status == 200
    reload = view["reload"]
    assert reload["ok"] is False and reload["rules"] == 2  # the previous rules keep running
    (problem,) = reload["problems"]
    assert problem["file"] == "broken.yaml" and problem["line"] == 6
    assert "dwel" in problem["message"] and "dwell" in problem["message"]
    assert problem["text"].startswith(str(console.rules / "broken.yaml") + ":6: ")
    assert [r["id"] for r in view["rules"]] == ["bike", "night-bay"]
    (console.rules / "broken.yaml").unlink()
    watcher.check()
    _, view = console.call("GET", "/api/v1/rules")
    assert view["reload"]["ok"] is True and view["reload"]["problems"] == []


def test_backtest_replays_the_journal_of_the_last_hours(console: Console) -> None:
    now = console.now
    journal = console.pipeline.journal
    recent = stays("7", now - timedelta(minutes=30), 120)  # opens 29 min ago
    passing = stays("8", now - timedelta(minutes=20), 40)  # leaves before its dwell
    older = stays("3", now - timedelta(hours=3), 100)  # opens 3 h ago
    journal.write_observations(older + recent + passing)
    status, result = console.call(
        "POST", "/api/v1/rules/bike/backtest", who="otto", body={"hours": 1}
    )
    assert status == 200, result
    assert result["source"] == "journal" and result["rule_id"] == "bike"
    assert result["observations"] == len(recent) + len(passing) and result["readings"] == 0
    assert result["items"] == result["observations"] and result["truncated"] is False
    (opened,) = result["opened"]
    assert opened["subject"] == "bicycle" and opened["subject_id"] == "7"
    assert opened["zone"] == "np-1" and opened["devices"] == ["cam-1"]
    assert datetime.fromisoformat(opened["opened_at"]) == now - timedelta(minutes=29)
    assert result["opened_total"] == 1 and result["before_window"] == 0
    _, wider = console.call("POST", "/api/v1/rules/bike/backtest", body={"hours": 4})
    assert [o["subject_id"] for o in wider["opened"]] == ["3", "7"]
    _, other = console.call("POST", "/api/v1/rules/night-bay/backtest", body={"hours": 4})
    assert other["opened"] == [] and other["items"] == len(older + recent + passing)


def test_backtest_can_rerun_the_sensor_detectors_on_the_journals_readings(
    console: Console,
) -> None:
    now = console.now

    def fix(minutes_ago: float, n: int) -> Reading:
        at = now - timedelta(minutes=minutes_ago)
        return Reading(
            key=f"gps-1/{n}",
            device_id="gps-1",
            stream=Stream.GPS,
            device_ts=at,
            received_ts=at,
            time_flag=TimeFlag.OK,
            payload=GpsFix(31.0, 121.0 + n / 1e5, speed_kmh=20.0),
        )

    journal = console.pipeline.journal
    journal.write([fix(120, 0), *(fix(10 - m, m + 1) for m in range(5))])
    journal.write_observations(stays("7", now - timedelta(minutes=30), 120))
    body = {"hours": 1, "sensors": "readings"}
    status, result = console.call("POST", "/api/v1/rules/bike/backtest", body=body)
    assert status == 200, result
    assert result["readings"] == 5 and result["observations"] == 61
    assert [o["subject_id"] for o in result["opened"]] == ["7"]


def test_the_journal_scan_goes_past_a_late_row_and_stops_at_old_ones() -> None:
    late = [(100.0 + t, t) for t in range(10)] + [(-5000.0, "late")] + [(99.0, "x")]
    rows, more = backtest_module._scan(reversed(late), 100.0, 100)
    assert [r[1] for r in rows] == list(range(10)) and not more
    old = [(-5000.0, n) for n in range(backtest_module.SCAN_PAST_ROWS)]
    rows, _ = backtest_module._scan(reversed([(150.0, "lost"), *old, (200.0, "kept")]), 100.0, 9)
    assert [r[1] for r in rows] == ["kept"]
    rows, more = backtest_module._scan(reversed(late), 100.0, 3)
    assert [r[1] for r in rows] == [7, 8, 9] and more


def test_backtest_replays_the_recording_when_the_run_records(tmp_path: Path) -> None:
    for console in rules_console(tmp_path, record=tmp_path / "run.jsonl"):
        recorder = console.pipeline.recorder
        assert recorder is not None
        for obs in stays("5", console.now - timedelta(minutes=10), 70):
            recorder.observation(obs)
        recorder.flush()
        status, result = console.call("POST", "/api/v1/rules/bike/backtest", body={"hours": 1})
        assert status == 200, result
        assert result["source"] == "recording" and result["observations"] == 36
        assert [o["subject_id"] for o in result["opened"]] == ["5"]
        assert result["bad_lines"] == 0


def test_a_recording_is_read_from_its_end_only(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    now = datetime.now(UTC)
    from rules.recording import RecordingWriter

    with RecordingWriter(path, site_id="s") as writer:
        for obs in stays("1", now - timedelta(hours=2), 20) + stays("2", now, 20):
            writer.observation(obs)
    with path.open("ab") as handle:
        handle.write(b'{"type": "observation", "observ')  # the line the run is writing
    items, truncated, bad = recording_tail(path, now - timedelta(hours=1))
    assert [i.subject_id for i in items] == ["2"] * 11 and not truncated and bad == 1
    items, truncated, _ = recording_tail(path, now - timedelta(hours=3), max_bytes=3000)
    assert items and truncated and {i.subject_id for i in items} <= {"1", "2"}
    items, truncated, _ = recording_tail(path, now - timedelta(hours=3), max_items=5)
    assert len(items) == 5 and truncated


def test_backtest_is_for_operators_on_loaded_rules_within_bounds(console: Console) -> None:
    body = {"hours": 1}
    status, result = console.call("POST", "/api/v1/rules/bike/backtest", who="vera", body=body)
    assert status == 403 and "operator role needed" in result["detail"]
    status, result = console.call("POST", "/api/v1/rules/nope/backtest", body=body)
    assert status == 404
    status, _ = console.call("POST", "/api/v1/rules/..%2F..%2Fetc/backtest", body=body)
    assert status == 404
    for bad in ({"hours": 0}, {"hours": 1000}, {"hours": 1, "extra": 1}, {"hours": "x"}):
        status, _ = console.call("POST", "/api/v1/rules/bike/backtest", body=bad)
        assert status == 422, bad
    with rules_api._backtesting:
        status, result = console.call("POST", "/api/v1/rules/bike/backtest", body=body)
    assert status == 429 and "another backtest" in result["detail"]
    status, result = console.call("POST", "/api/v1/rules/bike/backtest", body=body)
    assert status == 200 and result["opened"] == []


def test_the_api_is_described_and_the_page_is_served(console: Console) -> None:
    _, schema = console.call("GET", "/api/openapi.json")
    assert "/api/v1/rules" in schema["paths"]
    assert "/api/v1/rules/{rule_id}/backtest" in schema["paths"]
    assert {"RulesView", "BacktestResult", "BacktestRequest"} <= set(
        schema["components"]["schemas"]
    )
    assert "/rules" not in schema["paths"]
    status, html = console.call("GET", "/rules")
    assert status == 200 and "/static/rules.js" in html


def test_without_a_pipeline_the_rules_folder_is_listed(tmp_path: Path) -> None:
    config = _site(tmp_path)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "bike.yaml").write_text(BIKE, encoding="utf-8")
    server = serve_console(config, tmp_path / "console", rules_dir=folder)
    try:
        _, token = server.ctx.tokens.add("ada", "admin")  # type: ignore[attr-defined]
        host, port = server.address
        request = urllib.request.Request(
            f"http://{host}:{port}/api/v1/rules", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            view = json.loads(response.read())
        assert view["running"] is False and view["reload"] is None
        assert [r["id"] for r in view["rules"]] == ["bike"]
        assert view["rules"][0]["situations"] == []
    finally:
        server.stop()


def test_conditions_and_durations_read_as_rule_files_write_them(tmp_path: Path) -> None:
    from rules.schema import Condition

    both = Condition.model_validate(
        {
            "all": [
                {"kind": "occupancy", "zone": "bay-1", "dwell": "5m"},
                {"kind": "presence", "subject": "car", "min_count": 2},
            ],
            "within": "30s",
        }
    )
    assert condition_text(both) == (
        "occupancy in bay-1 for 5m AND presence of car 2 at once (within 30s)"
    )
    assert [duration_text(s) for s in (8, 90, 300, 5400, 1.5)] == [
        "8s",
        "1m30s",
        "5m",
        "1h30m",
        "1.5s",
    ]
