"""The files in deploy/ stay true: the production example validates with the catalog, and the
systemd unit runs commands that exist."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

from click.testing import CliRunner

from ingest.config import load_config
from rules.schema import load_rules
from streetwatch.cli import cli
from tests.conftest import REPO


def test_production_example_validates_with_the_catalog():
    example = REPO / "deploy" / "devices.production.yaml"
    command = [
        "check",
        "--json",
        "--no-files",
        "-c",
        str(example),
        "-r",
        str(REPO / "rules" / "catalog"),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "streetwatch", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    catalog = load_rules(REPO / "rules" / "catalog", load_config(example))
    assert json.loads(result.stdout)["rules"] == len(catalog) >= 19


def test_systemd_unit_commands_parse():
    unit = (REPO / "deploy" / "streetwatch.service").read_text()
    commands = [
        line.split("=", 1)[1]
        for line in unit.splitlines()
        if line.startswith(("ExecStart=", "ExecStartPre="))
    ]
    assert len(commands) == 2
    for command in commands:
        argv = shlex.split(command)
        assert argv[0].endswith("/streetwatch")
        args = [a for a in argv[1:] if a != "--log-json"]
        parsed = CliRunner().invoke(cli, [*args[:1], "--help"])
        assert parsed.exit_code == 0, parsed.output
        for option in (a for a in args if a.startswith("-")):
            assert option in parsed.output, f"{option} is not an option of {args[0]}"
