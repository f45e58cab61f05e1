"""`streetwatch sink migrate` and `sink status` against a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from streetwatch.cli import cli
from tests.sink.sinkdata import gps, journal_with


def _site(tmp_path: Path) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "site": {"id": "cli-site"},
                "storage": {"root": str(tmp_path / "var")},
                "timeseries": {"dsn_env": "SINK_TEST_DSN"},
                "devices": [{"id": "gps-1", "kind": "gps"}],
            }
        )
    )
    return path


def test_migrate_then_status(pg_dsn: str, tmp_path: Path) -> None:
    config = _site(tmp_path)
    runner = CliRunner()
    env = {"SINK_TEST_DSN": pg_dsn}
    first = runner.invoke(cli, ["sink", "migrate", "-c", str(config), "--json"], env=env)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {
        "mode": "plain", "timescaledb": None, "version": 6, "applied": [1, 2, 3, 4, 5, 6],
    }  # fmt: skip
    again = runner.invoke(cli, ["sink", "migrate", "-c", str(config)], env=env)
    assert again.stdout.strip() == "schema at version 6 (plain mode); applied: none (up to date)"

    journal_with(tmp_path / "var" / "journal.sqlite", [gps(i) for i in range(12)]).close()
    status = runner.invoke(cli, ["sink", "status", "-c", str(config), "--json"], env=env)
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["origin"] == "cli-site"
    assert report["cursors"]["readings"] == 0
    assert report["local"]["readings"] == 12
    assert report["backlog"] == 12


def test_unset_dsn_and_unreachable_database(tmp_path: Path) -> None:
    config = _site(tmp_path)
    runner = CliRunner()
    unset = runner.invoke(cli, ["sink", "migrate", "-c", str(config)], env={"SINK_TEST_DSN": ""})
    assert unset.exit_code == 1
    assert "environment variable SINK_TEST_DSN is not set" in unset.output
    down = runner.invoke(
        cli,
        ["sink", "migrate", "-c", str(config)],
        env={"SINK_TEST_DSN": "host=127.0.0.1 port=1 connect_timeout=2"},
    )
    assert down.exit_code == 1
    assert "Error: database: connection failed" in down.output


def test_no_timeseries_section_says_so(tmp_path: Path) -> None:
    """Issue 13, 2.11: not a complaint about an unset DSN variable."""
    config = tmp_path / "devices.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": {"id": "no-sink"},
                "storage": {"root": str(tmp_path / "var")},
                "devices": [{"id": "gps-1", "kind": "gps"}],
            }
        )
    )
    runner = CliRunner()
    for command in ("status", "migrate"):
        result = runner.invoke(
            cli, ["sink", command, "-c", str(config)], env={"STREETWATCH_PG_DSN": ""}
        )
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert lines == [
            f"Error: {config} has no timeseries: section, so there is no sink to migrate or "
            "report on (see docs/timeseries.md)"
        ]
        assert "STREETWATCH_PG_DSN" not in result.output
