"""The `streetwatch` command line. Exit 0 on success, non-zero with a one-line reason on failure."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import click

from ingest.yamlsource import ConfigError
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
def check(config_path: Path, as_json: bool, rules_dir: Path | None) -> None:
    """Validate devices.yaml (and rules with -r); errors name file:line and field."""
    config = load_or_fail(config_path)
    rule_count = None
    if rules_dir is not None:
        from streetwatch.rules_cli import load_rules_or_fail

        rule_count = len(load_rules_or_fail(rules_dir, config))
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


@cli.command()
@CONFIG_OPTION
@click.option("--broker", "broker_url", help="Override the broker URL from the config.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--status-every", type=float, default=5.0, show_default=True)
def run(
    config_path: Path, broker_url: str | None, duration: float | None, status_every: float
) -> None:
    """Run the pipeline (today: MQTT ingestion into the journal) until SIGINT/SIGTERM."""
    from ingest.journal import Journal
    from ingest.mqtt_consumer import BrokerRefused, MqttIngestor

    config = load_or_fail(config_path)
    if broker_url:
        config = config.model_copy(
            update={"broker": config.broker.model_copy(update={"url": broker_url})}
        )
    if config.broker.embedded:
        raise click.ClickException(
            "broker: embedded is not available yet; name a broker with --broker mqtt://host:port"
        )
    assert config.storage.journal is not None
    journal = Journal(config.storage.journal)
    ingestor = MqttIngestor(config, journal)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        ingestor.start(wait_s=15)
    except (BrokerRefused, ConfigError) as exc:
        ingestor.stop(timeout_s=1)
        raise click.ClickException(str(exc)) from None
    log = logging.getLogger("streetwatch")
    log.info("running; journal at %s", config.storage.journal)
    started = time.monotonic()
    last = 0
    while not stop.wait(status_every):
        counts = ingestor.stats.snapshot()
        done = counts.get("messages_committed", 0)
        click.echo(
            f"messages/s {(done - last) / status_every:.0f} · journaled "
            f"{counts.get('readings_journaled', 0)} · dead letters {counts.get('dead_letters', 0)}",
            err=True,
        )
        last = done
        if duration is not None and time.monotonic() - started >= duration:
            break
    ingestor.stop()
    journal.close()
    counts = ingestor.stats.snapshot()
    click.echo(json.dumps({k: counts[k] for k in sorted(counts)}))


from streetwatch.simulate import simulate  # noqa: E402

cli.add_command(simulate)
from streetwatch.rules_cli import rules as rules_group  # noqa: E402

cli.add_command(rules_group)
from streetwatch.evidence_cli import cases, evidence  # noqa: E402

cli.add_command(evidence)
cli.add_command(cases)
cli.add_command(__import__("streetwatch.sink.cli", fromlist=["sink"]).sink)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
