"""`streetwatch rules ...`: backtest rule files on a recording before deploying them."""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import click

from ingest.config import SiteConfig
from ingest.yamlsource import ConfigError
from rules.recording import RecordingError, read_recording
from rules.replay import ReplayResult, load_labels, replay, score, sensor_devices_of
from rules.schema import RuleSet, load_rules, parse_duration
from streetwatch.cliconfig import CONFIG_OPTION, load_or_fail


def load_rules_or_fail(rules_dir: Path, config: SiteConfig) -> RuleSet:
    """Rules for a command: each problem on stderr as file:line: field: why, then one line."""
    try:
        return load_rules(rules_dir, config)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise click.ClickException(
            f"{rules_dir}: {len(exc.problems)} problem(s), see above"
        ) from None


RULES_OPTION = click.option(
    "-r",
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder of rule files (*.yaml), or one file.",
)


@click.group("rules")
def rules() -> None:
    """Rule files: backtest them on recordings."""


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@rules.command("replay")
@click.argument("recording", type=click.Path(path_type=Path))
@CONFIG_OPTION
@RULES_OPTION
@click.option("--labels", type=click.Path(path_type=Path), help="True incidents (YAML or CSV).")
@click.option(
    "--tolerance",
    default="60s",
    show_default=True,
    callback=_duration,
    help="How far outside an incident's time window a violation may open and still match it.",
)
@click.option(
    "--sensors",
    type=click.Choice(["readings", "recorded"]),
    default="readings",
    show_default=True,
    help="Re-run the sensor detectors on recorded readings, or use recorded observations.",
)
@click.option(
    "--out-of-order",
    "out_of_order",
    default="10s",
    show_default=True,
    callback=_duration,
    help="The engine's out-of-order tolerance.",
)
@click.option("--json", "as_json", is_flag=True, help="Print violations and scores as JSON.")
def replay_command(
    recording: Path,
    config_path: Path,
    rules_dir: Path,
    labels: Path | None,
    tolerance: float,
    sensors: str,
    out_of_order: float,
    as_json: bool,
) -> None:
    """Backtest rules on RECORDING (from `streetwatch run --record`): which violations would
    open, and with --labels, precision and recall."""
    config = load_or_fail(config_path)
    rule_set = load_rules_or_fail(rules_dir, config)
    incidents = None
    if labels is not None:
        try:
            incidents = load_labels(labels)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            raise click.ClickException(
                f"{labels}: {len(exc.problems)} problem(s), see above"
            ) from None
    problems: list[str] = []
    try:
        devices = sensor_devices_of(read_recording(recording, problems))
        problems.clear()  # reported once, from the pass that replays
        result = replay(
            read_recording(recording, problems),
            rule_set,
            config,
            sensors=sensors,
            tolerance_s=out_of_order,
            sensor_devices=devices,
        )
    except RecordingError as exc:
        raise click.ClickException(str(exc)) from None
    for problem in problems[:20]:
        click.echo(f"skipped: {problem}", err=True)
    if len(problems) > 20:
        click.echo(f"skipped: ... and {len(problems) - 20} more bad lines", err=True)
    result.stats["bad_lines"] = len(problems)
    if incidents is not None:
        result.scores = score(result.violations, incidents, tolerance)
    if as_json:
        click.echo(json.dumps(_as_json(result, rule_set), ensure_ascii=False))
    else:
        _print_table(result, config)


def _as_json(result: ReplayResult, rule_set: RuleSet) -> dict[str, Any]:
    violations = []
    for v in result.violations:
        data = v.to_dict()
        data["observations"] = len(v.observations)
        violations.append(data)
    return {
        "rules": len(rule_set),
        "first_ts": None if result.first_ts is None else result.first_ts.isoformat(),
        "last_ts": None if result.last_ts is None else result.last_ts.isoformat(),
        "violations": violations,
        "stats": dict(sorted(result.stats.items())),
        "scores": None if result.scores is None else result.scores.to_dict(),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _deadline(opened: datetime, deadline: datetime | None, tz: tzinfo) -> str:
    if deadline is None:
        return "-"
    local = deadline.astimezone(tz)
    same_day = local.date() == opened.astimezone(tz).date()
    return local.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")


def _print_table(result: ReplayResult, config: SiteConfig) -> None:
    tz = config.site.tz
    rows = [("opened", "rule", "zone", "subject", "party", "deadline", "devices")]
    for v in result.violations:
        deadline = v.deadline
        rows.append(
            (
                v.opened_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
                v.rule_id,
                v.zone_id or "-",
                f"{v.subject} {v.subject_id}",
                v.party or "-",
                _deadline(v.opened_at, deadline, tz),
                ",".join(v.devices),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    stats = result.stats
    click.echo(
        f"{len(result.violations)} violation(s) from {stats.get('readings', 0)} readings and "
        f"{stats.get('observations_recorded', 0)} recorded observations "
        f"({stats.get('observations_from_readings', 0)} observations from readings; "
        f"{stats.get('engine_late_dropped', 0)} late, {stats.get('bad_lines', 0)} bad lines); "
        f"times in {config.site.timezone}"
    )
    if result.scores is not None:
        scores = result.scores
        click.echo("")
        table = [("rule", "violations", "incidents", "matched", "precision", "recall")]
        for rule_id, s in sorted(scores.per_rule.items()):
            table.append(
                (
                    rule_id,
                    str(s.violations),
                    str(s.incidents),
                    str(s.matched),
                    _pct(s.precision),
                    _pct(s.recall),
                )
            )
        t = scores.total
        table.append(
            (
                "all",
                str(t.violations),
                str(t.incidents),
                str(t.matched),
                _pct(t.precision),
                _pct(t.recall),
            )
        )
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        click.echo(
            f"precision {_pct(t.precision)}  recall {_pct(t.recall)}  "
            f"(tolerance {scores.tolerance_s:g} s)"
        )
