"""`streetwatch check`: exit 0 and a one-line summary, or non-zero with file:line problems."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from streetwatch.cli import cli
from tests.assets import shared_asset
from tests.conftest import MARKET_WEIGHTS, REPO, market_site_text

DEMO_FILE = REPO / "devices.yaml"
DEMO_TEXT = DEMO_FILE.read_text(encoding="utf-8")
DEMO = yaml.safe_load(DEMO_TEXT)
PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<field>\S+): (?P<why>.+)$")


pytestmark = pytest.mark.usefixtures("keep_root_logging")


def check(*args: str) -> Result:
    return CliRunner().invoke(cli, ["check", *args], catch_exceptions=False)


def broken_copy(tmp_path: Path) -> tuple[Path, list[tuple[int, str]]]:
    """The demo with a path-traversal device id and a misspelt key; returns the expected lines."""
    lines = DEMO_TEXT.split("\n")
    drone = lines.index("  - id: drone-01")
    lines[drone] = "  - id: ../drone-01"
    tz = next(i for i, line in enumerate(lines) if line.startswith("  timezone:"))
    lines[tz] = "  timezne: Asia/Shanghai"
    path = tmp_path / "devices.yaml"
    path.write_text("\n".join(lines), encoding="utf-8")
    index = [device["id"] for device in DEMO["devices"]].index("drone-01")
    return path, [(tz + 1, "site.timezne"), (drone + 1, f"devices[{index}].id")]


def test_valid_file_exits_0_with_a_one_line_summary() -> None:
    result = check("-c", str(DEMO_FILE))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{DEMO_FILE}: ok — site demo-street, {len(DEMO['devices'])} devices (")
    kinds = Counter(device["kind"] for device in DEMO["devices"])
    for kind, count in kinds.items():
        assert f"{count} {kind}" in line
    zones = sum(len(device.get("zones", [])) for device in DEMO["devices"])
    assert line.endswith(f"{zones} zones, {len(DEMO['merchants'])} merchants")


def test_json_summary_is_parseable() -> None:
    result = check("-c", str(DEMO_FILE), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == {
        "file": str(DEMO_FILE),
        "site": "demo-street",
        "devices": dict(Counter(device["kind"] for device in DEMO["devices"])),
        "zones": sum(len(device.get("zones", [])) for device in DEMO["devices"]),
        "merchants": len(DEMO["merchants"]),
        "broker": DEMO["broker"]["url"],
    }


def test_default_config_is_devices_yaml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared_asset("models/yolov8n_int8_640.tflite")
    site = tmp_path / "site"
    site.mkdir()
    (site / "devices.yaml").write_text(DEMO_TEXT, encoding="utf-8")
    # the models and footage it names, relative to it: var/ and the shared assets beside it
    (site / "var").symlink_to(REPO / "var")
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    monkeypatch.chdir(site)
    result = check("--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["file"] == "devices.yaml"


def test_broken_file_exits_non_zero_with_each_problem_on_stderr(tmp_path: Path) -> None:
    path, expected = broken_copy(tmp_path)
    result = check("-c", str(path))
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    *problem_lines, reason = lines
    got = []
    for line in problem_lines:
        match = PROBLEM.match(line)
        assert match, f"not `file:line: field: why`: {line!r}"
        assert match["file"] == str(path)
        got.append((int(match["line"]), match["field"]))
    assert sorted(got) == sorted(expected)
    assert "did you mean 'timezone'?" in result.stderr
    assert reason == f"Error: {path}: 2 problem(s), see above"


def test_broken_file_with_json_prints_no_summary(tmp_path: Path) -> None:
    path, expected = broken_copy(tmp_path)
    result = check("-c", str(path), "--json")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == len(expected) + 1


def test_secret_in_the_file_is_not_printed(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text(
        DEMO_TEXT.replace("\nbroker:\n", "\nbroker:\n  password: s3cr3t-Vx81\n", 1),
        encoding="utf-8",
    )
    result = check("-c", str(path))
    assert result.exit_code != 0
    assert "broker.password: secrets are not read from the file" in result.stderr
    assert "s3cr3t-Vx81" not in result.output


@pytest.mark.parametrize("name", ["missing.yaml", "a-directory"])
def test_unreadable_file_exits_non_zero_with_a_one_line_reason(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name == "a-directory":
        path.mkdir()
    result = check("-c", str(path))
    assert result.exit_code != 0
    assert result.stdout == ""
    *details, reason = result.stderr.splitlines()
    assert reason == f"Error: {path}: 1 problem(s), see above"
    [detail] = details
    assert detail.startswith(f"{path}: cannot read: ")


def test_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text("site:\n  id: demo\ndevices: [\n", encoding="utf-8")
    result = check("-c", str(path))
    assert result.exit_code != 0
    detail, reason = result.stderr.splitlines()
    assert re.match(rf"{re.escape(str(path))}:\d+: YAML syntax: ", detail)
    assert reason.startswith("Error: ")


def test_real_command_from_the_repository_root() -> None:
    script = REPO / ".venv" / "bin" / "streetwatch"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "streetwatch"]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [*command, "check", "-c", "devices.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith("devices.yaml: ok — site demo-street, ")


def streetwatch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real command, as a user runs it (a hang fails after `timeout` instead of blocking)."""
    script = REPO / ".venv" / "bin" / "streetwatch"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "streetwatch"]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [*command, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def demo_with(tmp_path: Path, weights: str, stream: str) -> tuple[Path, int, int]:
    """The demo site with the market camera's weights and video file replaced; returns the file
    and the lines of the two values."""
    text = market_site_text().replace(MARKET_WEIGHTS, f"weights: {weights}", 1)
    text = text.replace("stream: var/footage/vtest.avi", f"stream: {stream}", 1)
    path = tmp_path / "devices.yaml"
    path.write_text(text, encoding="utf-8")
    lines = text.split("\n")
    weights_line = next(i for i, line in enumerate(lines) if f"weights: {weights}" in line) + 1
    stream_line = next(i for i, line in enumerate(lines) if f"stream: {stream}" in line) + 1
    return path, weights_line, stream_line


def test_missing_weights_and_video_file_are_refused_with_file_line_and_device(
    tmp_path: Path,
) -> None:
    # check used to pass them, and `run` then died with a 35-line FileNotFoundError traceback
    path, weights_line, stream_line = demo_with(tmp_path, "models/nowhere.pt", "clips/gone.avi")
    index = [device["id"] for device in DEMO["devices"]].index("cam-market-01")
    result = check("-c", str(path))
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:{weights_line}: devices[{index}].detect.weights: device cam-market-01: "
        f"YOLO weights {tmp_path}/models/nowhere.pt: not found",
        f"{path}:{stream_line}: devices[{index}].stream: device cam-market-01: "
        f"video file {tmp_path}/clips/gone.avi: not found",
        f"Error: {path}: 2 problem(s), see above",
    ]
    for line in result.stderr.splitlines()[:-1]:
        assert PROBLEM.match(line), line
    # a config written for another box: the files are its business
    assert check("-c", str(path), "--no-files").exit_code == 0


@pytest.mark.timeout(60)
def test_a_fifo_as_video_file_or_a_folder_as_weights_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "live.avi")
    (tmp_path / "model.pt").mkdir()  # a folder is taken for an OpenVINO model: allowed
    (tmp_path / "model.onnx").symlink_to("/dev/zero")
    path, _, _ = demo_with(tmp_path, "model.onnx", "live.avi")
    result = check("-c", str(path))
    assert result.exit_code != 0
    problems = result.stderr.splitlines()[:-1]
    assert [p.split(": ", 3)[-1] for p in problems] == [
        f"YOLO weights {tmp_path}/model.onnx: it is a character device, not a regular file",
        f"video file {tmp_path}/live.avi: it is a FIFO (named pipe), not a regular file",
    ]
    path, _, _ = demo_with(tmp_path, "model.pt", str(REPO / "var" / "footage" / "vtest.avi"))
    if not (REPO / "var" / "footage" / "vtest.avi").is_file():
        pytest.skip("var/footage/vtest.avi is absent (`make footage` puts it there)")
    assert check("-c", str(path)).exit_code == 0


@pytest.mark.timeout(120)
def test_dev_zero_and_a_fifo_as_devices_yaml_end_in_one_line(tmp_path: Path) -> None:
    # /dev/zero was read "to the end" (24 GB, then the OOM killer); a FIFO blocked for ever
    os.mkfifo(tmp_path / "devices.yaml")
    for config, what in (
        ("/dev/zero", "a character device"),
        (tmp_path / "devices.yaml", "a FIFO"),
    ):
        done = streetwatch("check", "-c", str(config), timeout=50)
        assert done.returncode != 0
        detail, reason = done.stderr.splitlines()
        assert detail.startswith(f"{config}: cannot read: it is {what}")
        assert detail.endswith(", not a regular file")
        assert reason == f"Error: {config}: 1 problem(s), see above"


@pytest.mark.timeout(120)
def test_rules_folder_with_a_fifo_or_a_rule_that_cannot_fire(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules" / "catalog", rules)
    fire_lane = rules / "fire-lane.yaml"
    text = fire_lane.read_text(encoding="utf-8")
    fire_lane.write_text(text.replace("zone_kind: fire_lane", "zone_kind: geofence"), "utf-8")
    line = text.split("\n").index("  zone_kind: fire_lane") + 1
    os.mkfifo(rules / "pipe.yaml")
    done = streetwatch("check", "-c", "devices.yaml", "-r", str(rules), "--no-files", timeout=100)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        f"{fire_lane}:{line}: condition.zone_kind: no zone of kind 'geofence' in devices.yaml, "
        "so the rule can never fire; zone kinds there: fire_lane, no_parking, restricted, "
        "shopfront, sidewalk",
        f"{rules}/pipe.yaml: cannot read: it is a FIFO (named pipe), not a regular file",
        f"Error: {rules}: 2 problem(s), see above",
    ]
