"""`streetwatch check`: exit 0 and a one-line summary, or non-zero with file:line problems."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from streetwatch.cli import cli
from tests.conftest import REPO

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
    (tmp_path / "devices.yaml").write_text(DEMO_TEXT, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
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
