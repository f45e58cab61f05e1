"""`streetwatch check -r` and `streetwatch rules replay`: exit codes, one-line reasons, output."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from detectors.observation import Observation, ObservationKind
from rules.recording import RecordingWriter
from streetwatch.cli import cli
from tests.conftest import REPO

DEVICES = str(REPO / "devices.yaml")
CATALOG = str(REPO / "rules" / "catalog")
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


pytestmark = pytest.mark.usefixtures("keep_root_logging")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _catalog_size() -> int:
    from ingest.config import load_config
    from rules.schema import load_rules

    return len(load_rules(CATALOG, load_config(DEVICES)))


def test_check_with_rules_counts_them():
    result = invoke("check", "-c", DEVICES, "-r", CATALOG)
    assert result.exit_code == 0, result.output
    assert f"rules/catalog: {_catalog_size()} rules ok" in result.stdout
    result = invoke("check", "-c", DEVICES, "--rules", CATALOG, "--json")
    summary = json.loads(result.stdout)
    assert summary["rules"] == _catalog_size() and summary["site"] == "demo-street"


def test_check_with_a_bad_rule_names_file_line_and_exits_non_zero(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "id: bikes\nname: Bikes\ncategory: a/b\ncondition:\n  kind: presence\n"
        "  zone: no-parking-center\n  dwel: 5m\n"
    )
    result = invoke("check", "-c", DEVICES, "-r", str(tmp_path))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{tmp_path}/bad.yaml:6: condition.zone: unknown zone 'no-parking-center' "
        "(not in devices.yaml); did you mean 'no-parking-centre'?",
        f"{tmp_path}/bad.yaml:7: condition.dwel: unknown field 'dwel'; did you mean 'dwell'?",
        f"Error: {tmp_path}: 2 problem(s), see above",
    ]
    (tmp_path / "bad.yaml").write_text(
        "id: bikes\nname: Bikes\ncategory: a/b\ncondition:\n  kind: presence\n"
        "  zone: no-parking-center\n"
    )
    result = invoke("check", "-c", DEVICES, "-r", str(tmp_path))
    assert result.exit_code == 1
    assert (
        f"{tmp_path}/bad.yaml:6: condition.zone: unknown zone 'no-parking-center' "
        "(not in devices.yaml); did you mean 'no-parking-centre'?"
    ) in result.stderr


def test_check_with_a_missing_rules_folder(tmp_path):
    result = invoke("check", "-c", DEVICES, "-r", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert "no such rules folder or file" in result.stderr


def _bike(sid: str, start_s: int, stay_s: int) -> list[Observation]:
    first = T0 + timedelta(seconds=start_s)
    return [
        Observation(
            ObservationKind.PRESENCE,
            "cam-market-01",
            "bicycle",
            sid,
            first,
            first + timedelta(seconds=t),
            zone_id="no-parking-centre",
            zone_kind="no_parking",
        )
        for t in range(0, stay_s + 1, 2)
    ]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "run.jsonl"
    with RecordingWriter(path, site_id="demo-street") as writer:
        for o in _bike("a", 0, 400) + _bike("b", 1000, 200) + _bike("c", 2000, 600):
            writer.observation(o)
    return path


def _labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(
        "rule,zone,subject_id,start,end\n"
        f"stray-non-motor,no-parking-centre,,{T0.isoformat()},"
        f"{(T0 + timedelta(seconds=400)).isoformat()}\n"
        f"stray-non-motor,,,{(T0 + timedelta(seconds=1000)).isoformat()},"
        f"{(T0 + timedelta(seconds=1200)).isoformat()}\n"
    )
    return path


def test_replay_prints_violations_and_scores(tmp_path, recording):
    result = invoke(
        "rules",
        "replay",
        str(recording),
        "-c",
        DEVICES,
        "--rules",
        CATALOG,
        "--labels",
        str(_labels(tmp_path)),
    )
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[0].split() == ["opened", "rule", "zone", "subject", "party", "deadline", "devices"]
    assert out[1].split()[:4] == ["2026-11-23", "10:05:00", "stray-non-motor", "no-parking-centre"]
    assert out[2].split()[:2] == ["2026-11-23", "10:38:20"]
    assert out[3].startswith("2 violation(s)")
    assert out[-1] == "precision 50%  recall 50%  (tolerance 60 s)"


def test_replay_json(tmp_path, recording):
    result = invoke(
        "rules",
        "replay",
        str(recording),
        "-c",
        DEVICES,
        "-r",
        CATALOG,
        "--labels",
        str(_labels(tmp_path)),
        "--json",
        "--tolerance",
        "2m",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rules"] == _catalog_size()
    assert [v["subject_id"] for v in data["violations"]] == ["a", "c"]
    assert data["violations"][0]["dispose_within_s"] == 900
    assert data["scores"]["total"] == {
        "violations": 2,
        "incidents": 2,
        "matched": 1,
        "precision": 0.5,
        "recall": 0.5,
    }
    assert data["scores"]["tolerance_s"] == 120


def test_replay_skips_bad_lines_with_their_numbers(tmp_path, recording):
    with recording.open("ab") as handle:
        handle.write(b"{not json\n")
    result = invoke("rules", "replay", str(recording), "-c", DEVICES, "-r", CATALOG, "--json")
    assert result.exit_code == 0
    assert f"skipped: {recording}:" in result.stderr and "not JSON" in result.stderr
    assert json.loads(result.stdout)["stats"]["bad_lines"] == 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["missing.jsonl"], "missing.jsonl: cannot read"),
        (["{rec}", "--labels", "nolabels.yaml"], "nolabels.yaml: 1 problem(s), see above"),
        (["{rec}", "--tolerance", "soon"], "Invalid value for '--tolerance'"),
    ],
)
def test_replay_failures_exit_non_zero_with_one_line(tmp_path, recording, args, reason):
    args = [a.replace("{rec}", str(recording)) for a in args]
    args = [
        str(tmp_path / a) if a.endswith((".jsonl", ".yaml")) and "/" not in a else a for a in args
    ]
    result = invoke("rules", "replay", *args, "-c", DEVICES, "-r", CATALOG)
    assert result.exit_code != 0
    assert reason in result.stderr.strip().splitlines()[-1]


def test_replay_as_a_subprocess(tmp_path, recording):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streetwatch",
            "rules",
            "replay",
            str(recording),
            "-c",
            DEVICES,
            "-r",
            CATALOG,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["violations"]) == 2
