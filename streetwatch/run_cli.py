"""`streetwatch run`: the whole pipeline until SIGINT/SIGTERM (or --duration), then a summary."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ingest.yamlsource import ConfigError
from streetwatch.cliconfig import CONFIG_OPTION, load_or_fail
from streetwatch.localbroker import Mosquitto
from streetwatch.pipeline import CATALOG, Pipeline, PipelineOptions
from streetwatch.preflight import preflight_problems
from streetwatch.rules_cli import load_rules_or_fail

if TYPE_CHECKING:
    from streetwatch.console import ConsoleServer

log = logging.getLogger("streetwatch.run")


def status_line(
    stages: dict[str, dict[str, float]],
    last: dict[str, float],
    every: float,
    feed: bool = True,
) -> str:
    """One status line. `feed`: whether a case feed is configured; without one the line says
    `feed off` rather than a `delivered 0` that reads like a feed that is failing."""
    ingest, cameras, pipeline = stages["ingest"], stages["cameras"], stages["pipeline"]
    messages = ingest.get("messages_committed", 0)
    frames = cameras.get("frames", 0)
    rate = (messages - last.get("messages", 0)) / every
    fps = (frames - last.get("frames", 0)) / every
    last.update(messages=messages, frames=frames)
    delivered = sum(v for k, v in stages["feed"].items() if k.endswith("_delivered"))
    return (
        f"messages/s {rate:.0f} · frames/s {fps:.1f} · observations "
        f"{pipeline.get('observations', 0)} · cases opened {pipeline.get('cases_opened', 0)} · "
        f"packages {pipeline.get('packages', 0)} · "
        + (f"delivered {delivered}" if feed else "feed off")
        + f" · dead letters {ingest.get('dead_letters', 0)}"
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fail(problems: list[str]) -> click.ClickException:
    """Each problem on its own line, then the one-line `Error:` (the problem itself if one)."""
    if len(problems) == 1:
        return click.ClickException(problems[0])
    for problem in problems:
        click.echo(problem, err=True)
    return click.ClickException(f"{len(problems)} problem(s), see above")


@click.command()
@CONFIG_OPTION
@click.option(
    "-r",
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=CATALOG,
    show_default="the shipped catalog",
    help="Folder of rule files (hot-reloaded on change).",
)
@click.option("--broker", "broker_url", help="Override the broker URL from the config.")
@click.option(
    "--record",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Append every reading and observation to this recording (for `rules replay`).",
)
@click.option("--no-cameras", is_flag=True, help="Sensors only: do not open the video streams.")
@click.option("--loop-video", is_flag=True, help="Play video files over and over.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option(
    "--status-every",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds between status lines on stderr (rates, cases, packages, dead letters).",
)
@click.option(
    "--http-port",
    "--metrics-port",
    "http_port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve the console (pages, /api/v1, /metrics, /healthz) here; off without it. "
    "(--metrics-port: its old name.)",
)
@click.option(
    "--whip-port",
    type=int,
    default=8189,
    show_default=True,
    help="WHIP endpoint for cameras with `stream: webrtc` (token in $STREETWATCH_WHIP_TOKEN).",
)
@click.option(
    "--ingest-workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="MQTT ingestion in this many processes, each on a share of the devices with a journal "
    "of its own, read into the main journal (beyond one core).",
)
@click.option(
    "--http-host",
    default="127.0.0.1",
    show_default=True,
    help="Bind address of the console and the WHIP endpoint.",
)
def run(
    config_path: Path,
    rules_dir: Path,
    broker_url: str | None,
    record: Path | None,
    no_cameras: bool,
    loop_video: bool,
    duration: float | None,
    status_every: float,
    http_port: int | None,
    whip_port: int,
    http_host: str,
    ingest_workers: int,
) -> None:
    """Run ingestion, detection, rules, evidence, case feed and sink until SIGINT/SIGTERM."""
    from evidence.keys import KeyFileError
    from ingest.mqtt_consumer import BrokerRefused

    config = load_or_fail(config_path)
    if broker_url:
        config = config.model_copy(
            update={"broker": config.broker.model_copy(update={"url": broker_url})}
        )
    rules = load_rules_or_fail(rules_dir, config)
    problems = [] if no_cameras else preflight_problems(config, config_path)
    if problems:
        raise _fail(problems)
    embedded = None
    if config.broker.embedded:
        from streetwatch.embedded import EmbeddedBrokerError, start_embedded_broker

        try:
            config, embedded = start_embedded_broker(config)
        except EmbeddedBrokerError as exc:
            raise click.ClickException(str(exc)) from None
    options = PipelineOptions(
        rules_dir=rules_dir,
        record=record,
        cameras=not no_cameras,
        loop_video=loop_video,
        whip_host=http_host,
        whip_port=whip_port,
        ingest_workers=ingest_workers,
    )
    try:
        pipeline = Pipeline(config, options, rules)
    except ConfigError as exc:
        _stop(embedded)
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{len(exc.problems)} problem(s), see above") from None
    except KeyFileError as exc:
        _stop(embedded)
        raise click.ClickException(str(exc)) from None
    except (OSError, ValueError, RuntimeError) as exc:  # a model or file the pipeline needs
        _stop(embedded)
        raise click.ClickException(f"could not start: {_one_line(exc)}") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ops = None
    if http_port is not None:
        # serving before the pipeline starts: /healthz tells a slow start from a dead one, and
        # /metrics is up by the time the log says "running:"
        try:
            ops = start_console(pipeline, config_path, rules_dir, http_host, http_port)
        except OSError as exc:
            _stop(embedded)
            raise click.ClickException(f"{exc}; choose another --http-port") from None
        log.info("console at %s", ops.url)
    try:
        pipeline.start(wait_s=15)
    except (BrokerRefused, ConfigError, OSError) as exc:  # OSError: e.g. the WHIP port taken
        try:
            pipeline.stop(timeout_s=1)
        except Exception as cleanup:  # a half-started stage: the reason to stop comes first
            log.warning("stopping after the failed start: %s", _one_line(cleanup))
        _stop(embedded)
        if ops is not None:
            ops.stop()
        raise click.ClickException(_one_line(exc)) from None
    started = time.monotonic()
    last: dict[str, float] = {}
    while not stop.wait(status_every):
        line = status_line(
            pipeline.stage_counters(), last, status_every, bool(pipeline.feed.targets)
        )
        click.echo(line, err=True)
        if duration is not None and time.monotonic() - started >= duration:
            break
    pipeline.stop()
    _stop(embedded)
    if ops is not None:
        ops.stop()
    stages = pipeline.stage_counters()
    click.echo(json.dumps({"ingest": stages["ingest"], "pipeline": stages["pipeline"]}))


def start_console(
    pipeline: Pipeline, config_path: Path, rules_dir: Path, host: str, port: int
) -> ConsoleServer:
    """The console for a pipeline about to start, serving on host:port."""
    from streetwatch.console import ConsoleContext, ConsoleServer, create_app

    ctx = ConsoleContext.for_site(
        pipeline.config,
        pipeline.cases,
        sources=pipeline.stage_counters,
        health=pipeline.health,
        config_path=config_path,
        rules_dir=rules_dir,
        pipeline=pipeline,
    )
    return ConsoleServer(create_app(ctx), host=host, port=port).start()


def _stop(broker: Mosquitto | None) -> None:
    if broker is not None:
        broker.stop()
