"""The `streetwatch` command line. Exit 0 on success, non-zero with a one-line reason on failure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from streetwatch.cliconfig import CONFIG_OPTION, load_or_fail
from streetwatch.logs import setup_logging


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING, ...")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
def cli(log_level: str, log_json: bool) -> None:
    """streetwatch: sensors and video in, signed enforcement evidence out."""
    setup_logging(log_level, json_lines=log_json)


@cli.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@click.option(
    "-r",
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Also validate the rule files in this folder against the devices and zones.",
)
@click.option(
    "--no-files",
    is_flag=True,
    help="Do not check that model weights and video files exist here (a config for another box).",
)
def check(config_path: Path, as_json: bool, rules_dir: Path | None, no_files: bool) -> None:
    """Validate devices.yaml (and rules with -r); errors name file:line and field.

    Also checks that each camera's YOLO weights and each video file exist and are regular
    files, as `run` needs them on this machine (skip with --no-files)."""
    from ingest.yamlsource import ConfigError
    from rules.schema import load_rules
    from streetwatch.preflight import preflight_problems

    config = load_or_fail(config_path)
    problems = [] if no_files else preflight_problems(config, config_path)
    where = [str(config_path)] if problems else []
    rule_count = None
    if rules_dir is not None:
        try:
            rule_count = len(load_rules(rules_dir, config))
        except ConfigError as exc:
            problems += exc.problems
            where.append(str(rules_dir))
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{' and '.join(where)}: {len(problems)} problem(s), see above")
    kinds: dict[str, int] = {}
    for device in config.devices:
        kinds[device.kind.value] = kinds.get(device.kind.value, 0) + 1
    zones = sum(len(d.zones) for d in config.devices)
    summary = {
        "file": str(config_path),
        "site": config.site.id,
        "devices": kinds,
        "zones": zones,
        "merchants": len(config.merchants),
        "broker": config.broker.url,
    }
    if rule_count is not None:
        summary["rules_dir"], summary["rules"] = str(rules_dir), rule_count
    if as_json:
        click.echo(json.dumps(summary))
    else:
        devices = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        click.echo(
            f"{config_path}: ok — site {config.site.id}, {len(config.devices)} devices "
            f"({devices}), {zones} zones, {len(config.merchants)} merchants"
            + ("" if rule_count is None else f"; {rules_dir}: {rule_count} rules ok")
        )


from streetwatch.evidence_cli import cases, evidence  # noqa: E402
from streetwatch.rules_cli import rules as rules_group  # noqa: E402
from streetwatch.run_cli import run  # noqa: E402
from streetwatch.simulate import simulate  # noqa: E402
from streetwatch.sink.cli import sink  # noqa: E402
from streetwatch.tokens_cli import tokens  # noqa: E402
from streetwatch.users_cli import users  # noqa: E402

for command in (run, simulate, rules_group, evidence, cases, sink, users, tokens):
    cli.add_command(command)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
