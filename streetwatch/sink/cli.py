"""`streetwatch sink migrate` and `streetwatch sink status`: the database side by hand."""

from __future__ import annotations

import json
from pathlib import Path

import click
import psycopg

from ingest.config import SiteConfig, Timeseries
from ingest.yamlsource import ConfigError
from streetwatch.cliconfig import CONFIG_OPTION, load_or_fail
from streetwatch.sink.migrate import Mode, apply_migrations
from streetwatch.sink.policies import HYPERTABLES, apply_policies
from streetwatch.sink.sink import TimeseriesSink


def _settings(config: SiteConfig, config_path: Path) -> tuple[Timeseries, str]:
    settings = config.timeseries
    if settings is None:
        raise click.ClickException(
            f"{config_path} has no timeseries: section, so there is no sink to migrate or "
            "report on (see docs/timeseries.md)"
        )
    try:
        return settings, settings.resolve_dsn()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _fail(exc: psycopg.Error) -> click.ClickException:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return click.ClickException(f"database: {first}")


def default_case_store(config: SiteConfig) -> Path | None:
    """The evidence stage's case store, when this site has one configured."""
    try:
        from evidence.settings import evidence_paths

        return evidence_paths(config).cases
    except Exception:  # the evidence stage is optional for the sink
        return None


ROW_ESTIMATE = {
    # a hypertable's own pg_class row stays empty: its rows are in the chunks
    Mode.TIMESCALE: "SELECT approximate_row_count(%s::regclass)",
    Mode.PLAIN: "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
}


def row_estimates(conn: psycopg.Connection, mode: Mode) -> dict[str, int]:
    """Rows per table from the statistics (no count(*) over a year of data)."""
    return {
        table: int(conn.execute(ROW_ESTIMATE[mode], (table,)).fetchone()[0] or 0)  # type: ignore[index]
        for table in HYPERTABLES
    }


@click.group()
def sink() -> None:
    """Time series in PostgreSQL/TimescaleDB: schema and shipping status."""


@sink.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def migrate(config_path: Path, as_json: bool) -> None:
    """Create or update the schema (idempotent) and set the chunk/compression/retention policies."""
    config = load_or_fail(config_path)
    settings, dsn = _settings(config, config_path)
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            result = apply_migrations(conn)
            apply_policies(conn, settings, result.mode)
    except psycopg.Error as exc:
        raise _fail(exc) from None
    summary = {
        "mode": result.mode.value,
        "timescaledb": result.timescale_version,
        "version": result.current,
        "applied": result.applied,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        applied = ", ".join(f"{v:04d}" for v in result.applied) or "none (up to date)"
        click.echo(
            f"schema at version {result.current} ({result.mode.value} mode); applied: {applied}"
        )


@sink.command()
@CONFIG_OPTION
@click.option("--cases", "cases_path", type=click.Path(path_type=Path), default=None,
              help="Case store (default: the evidence stage's).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(config_path: Path, cases_path: Path | None, as_json: bool) -> None:
    """Where the sink stands: cursors against the journal, backlog, rows, rejects."""
    config = load_or_fail(config_path)
    settings, dsn = _settings(config, config_path)
    assert config.storage.journal is not None
    shipper = TimeseriesSink(
        config,
        config.storage.journal,
        cases_path or default_case_store(config),
        dsn=dsn,
        settings=settings,
    )
    try:
        conn = shipper.connect()
        rows = row_estimates(conn, shipper.mode or Mode.PLAIN)
        rejects = dict(
            conn.execute(
                "SELECT reason, count(*) FROM sink_rejects WHERE origin = %s GROUP BY reason",
                (shipper.origin,),
            ).fetchall()
        )
    except psycopg.Error as exc:
        raise _fail(exc) from None
    finally:
        state = shipper.status()
        shipper.close()
    report = {
        "origin": state["origin"],
        "mode": state["mode"],
        "cursors": state["cursors"],
        "local": {s.name: s.max_seq() for s in shipper.sources},
        "backlog": state["backlog"],
        "journal_bytes": state["journal_bytes"],
        "journal_warn_bytes": settings.journal_warn_bytes,
        "rows_estimate": rows,
        "rejects": rejects,
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"origin {report['origin']} · {report['mode']} mode · backlog {report['backlog']}")
    for name, seq in report["cursors"].items():
        click.echo(f"  {name:<13} shipped to seq {seq} of {report['local'][name]}")
    click.echo(
        f"  journal {report['journal_bytes'] / 2**20:.1f} MiB"
        f" (warning at {settings.journal_warn_bytes / 2**20:.0f} MiB)"
    )
    click.echo("  rows (estimate): " + ", ".join(f"{t} {n}" for t, n in rows.items()))
    if rejects:
        click.echo("  rejected: " + ", ".join(f"{r} {n}" for r, n in sorted(rejects.items())))
