"""`streetwatch evidence verify` and `streetwatch cases list|show`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from evidence.cases import CaseStore, UnknownCase
from evidence.keys import KeyFileError, Verifier
from evidence.package import MANIFEST
from evidence.settings import evidence_paths
from evidence.stats import case_stats, merchant_offences
from evidence.verify import (
    Report,
    is_evidence_root,
    parse_expected_head,
    verify_chain,
    verify_package,
)
from streetwatch.cliconfig import CONFIG_OPTION, load_or_fail


@click.group()
def evidence() -> None:
    """Evidence packages: verify hashes, signatures and the chain."""


@evidence.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The box's public key (PEM) to pin the chain to. Default: the key named in the "
    "devices.yaml of -c, when that file exists.",
)
@CONFIG_OPTION
@click.option(
    "--expect-head",
    metavar="SEQ:SHA256",
    help="A link known from outside the box, e.g. the highest sequence number and manifest "
    "SHA-256 the case system acknowledged: fail unless the chain reaches it with that manifest "
    "(a chain cannot prove its own tail).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    path: Path,
    public_key: Path | None,
    config_path: Path,
    expect_head: str | None,
    as_json: bool,
) -> None:
    """Check a package folder, or an evidence root (every package and the hash chain).

    The chain is pinned to the box's public key: --public-key, else the evidence key of the
    devices.yaml named by -c (./devices.yaml by default, used only when it exists). The report
    says which config and key it used; without one it warns that the key is not pinned. A
    signing key that changes inside the chain always fails.
    """
    source = click.get_current_context().get_parameter_source("config_path")
    explicit = source is not click.core.ParameterSource.DEFAULT
    expected = None
    if expect_head is not None:
        try:
            expected = parse_expected_head(expect_head)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expect-head") from None
    pin = _verifier(public_key, config_path, explicit=explicit)
    if (path / MANIFEST).exists() or not is_evidence_root(path):
        if expected is not None:
            raise click.ClickException(
                f"{path}: --expect-head needs an evidence root (a chain), not one package"
            )
        report, _ = verify_package(path, pin.verifier)
    else:
        report = verify_chain(path, pin.verifier, expect_head=expected)
    report.key_source = pin.source
    if pin.verifier is None and report.signing_keys:
        report.key_source += ": " + ", ".join(report.signing_keys)
    report.config = pin.config
    if pin.verifier is None:
        _warn_unpinned(report, pin)
    _print(report, path, as_json, pin)
    if not report.ok:
        raise click.ClickException(
            f"{path}: {len(report.findings)} finding(s): "
            + ", ".join(sorted({f.kind for f in report.findings}))
        )


@dataclass(frozen=True, slots=True)
class _Pin:
    verifier: Verifier | None
    source: str
    """Where the key came from, or that there is none."""
    config: str | None
    """The devices.yaml that was read, if any."""
    why: str = ""
    """Why no config, or no key from it, was used."""


_UNPINNED = "the key named in each manifest (not pinned)"


def _verifier(public_key: Path | None, config_path: Path, *, explicit: bool) -> _Pin:
    """The key to pin the chain to: --public-key, else the one -c (or ./devices.yaml) names.
    A config named with -c must exist and name an existing key; the default may be absent."""
    try:
        if public_key is not None:
            why = "--public-key given"
            return _Pin(Verifier.from_pem(public_key), f"{public_key} (--public-key)", None, why)
        if not config_path.exists():
            if explicit:
                raise click.ClickException(f"{config_path}: no such file (-c)")
            return _Pin(None, _UNPINNED, None, f"{config_path} not found in {Path.cwd()}")
        pub = evidence_paths(load_or_fail(config_path)).public_key
        if not pub.exists():
            if explicit:
                raise click.ClickException(
                    f"{config_path}: its evidence key's public half {pub} does not exist; "
                    "pass the box's public key with --public-key"
                )
            why = f"the public key {pub} that {config_path} names does not exist"
            return _Pin(None, _UNPINNED, str(config_path), why)
        return _Pin(Verifier.from_pem(pub), str(pub), str(config_path))
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None


def _warn_unpinned(report: Report, pin: _Pin) -> None:
    keys = ", ".join(report.signing_keys) or "none"
    click.echo(
        f"warning: not pinned: the chain's signing key ({keys}) was not checked against the "
        f"box's key ({pin.why}), only against the key each manifest names, and anyone can "
        "re-sign a whole chain with a key of their own. Pin it: --public-key "
        "<the box's evidence key>.pub (e.g. var/keys/box_ed25519.pem.pub), or -c devices.yaml",
        err=True,
    )


def _print(report: Report, path: Path, as_json: bool, pin: _Pin) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    for finding in report.findings:
        click.echo(str(finding))
    state = "ok" if report.ok else "FAILED"
    head = ""
    if report.head is not None:
        head = f"; head: seq {report.head['seq']} {report.head['manifest_sha256']}"
    config = pin.config if pin.config and not pin.why else f"{pin.config or 'none'} ({pin.why})"
    click.echo(
        f"{path}: {state} — {report.packages} package(s), {report.pruned} pruned link(s), "
        f"{len(report.findings)} finding(s); key: {report.key_source}; config: {config}{head}",
        err=not report.ok,
    )


@click.group()
def cases() -> None:
    """The case store: enforcement cases and their life cycle."""


def _store(config_path: Path) -> CaseStore:
    path = evidence_paths(load_or_fail(config_path)).cases
    if not path.exists():
        raise click.ClickException(f"{path}: no case store yet (no violation has been handled)")
    return CaseStore(path)


@cases.command("list")
@CONFIG_OPTION
@click.option("--state", "states", multiple=True, help="Only cases in this state (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of cases.")
def list_cases(config_path: Path, states: tuple[str, ...], as_json: bool) -> None:
    """List cases, oldest first."""
    store = _store(config_path)
    try:
        found = store.list(states or None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in found], ensure_ascii=False))
        return
    for c in found:
        flag = " ESCALATED" if c.escalated_at else ""
        deadline = c.deadline.isoformat() if c.deadline else "-"
        click.echo(
            f"{c.case_id}  {c.state.value:<17} {c.rule_id:<24} opened {c.opened_at.isoformat()}"
            f"  deadline {deadline}{flag}"
        )
    click.echo(f"{len(found)} case(s)", err=True)


_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def _case_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Case ids name evidence folders: refuse `../`, slashes and the like before any lookup."""
    if not _CASE_ID.fullmatch(value):
        raise click.BadParameter(
            f"{value!r} is not a case id: case ids are letters, digits, '-' and '_' "
            "(as `streetwatch cases list` prints them, e.g. 20260101-3f2a…)"
        )
    return value


@cases.command("show")
@click.argument("case_id", callback=_case_id)
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="The case and its events as JSON.")
def show(case_id: str, config_path: Path, as_json: bool) -> None:
    """One case with every event of its life cycle."""
    store = _store(config_path)
    try:
        case = store.get(case_id)
    except UnknownCase:
        raise click.ClickException(f"no case {case_id!r}") from None
    events = store.events(case_id)
    if as_json:
        data = case.to_dict() | {"events": [e.to_dict() for e in events]}
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    for key, value in case.to_dict().items():
        click.echo(f"{key:<16} {value}")
    click.echo("events:")
    for e in events:
        click.echo(f"  {e.seq:>6}  {e.at.isoformat()}  {e.event:<17} {json.dumps(e.data)}")


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """`--since`: an ISO date or time (UTC when it names no offset), or a period back from
    now: `30d`, `12h`, `90m`."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([dhm])", value.strip())
    if match:
        unit = {"d": 86400, "h": 3600, "m": 60}[match.group(2)]
        return datetime.now(UTC) - timedelta(seconds=float(match.group(1)) * unit)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected an ISO date or time (2026-11-01, 2026-11-01T08:00+08:00) "
            "or a period back from now (30d, 12h, 90m)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


SINCE_OPTION = click.option(
    "--since",
    callback=_since,
    help="Only cases opened since: an ISO date/time or a period back from now (30d, 12h).",
)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


@cases.command("stats")
@CONFIG_OPTION
@SINCE_OPTION
@click.option("--json", "as_json", is_flag=True, help="The figures as one JSON object.")
def stats_command(config_path: Path, since: datetime | None, as_json: bool) -> None:
    """The figures the field reports, per rule and in total: cases opened per day and month,
    cleared by the box vs rectified by the case system, disposal time p50/p90, the share
    disposed within the deadline, escalations, repeats and reviewer rejections."""
    config = load_or_fail(config_path)
    store = _store(config_path)
    offset = datetime.now(config.site.tz).utcoffset() or timedelta(0)
    figures = case_stats(store, since, utc_offset_s=offset.total_seconds())
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
        return
    header = (
        f"{'rule':<26}{'opened':>7}{'/day':>7}{'box':>6}{'rect':>6}{'p50':>11}{'p90':>11}"
        f"{'in time':>9}{'escal':>7}{'repeat':>7}{'reject':>7}"
    )
    click.echo(header)
    for f in [*figures["rules"], figures["total"]]:
        days = len(f["per_day"]) or 1
        share = f["within_deadline_share"]
        click.echo(
            f"{f['rule_id'] or 'TOTAL':<26}{f['opened']:>7}{f['opened'] / days:>7.1f}"
            f"{f['cleared_by_box']:>6}{f['rectified']:>6}{_minutes(f['disposal_p50_s']):>11}"
            f"{_minutes(f['disposal_p90_s']):>11}"
            f"{'-' if share is None else f'{share:.0%}':>9}{f['escalations']:>7}"
            f"{f['repeats']:>7}{f['rejected']:>7}"
        )
    months = ", ".join(f"{m}: {n}" for m, n in sorted(figures["total"]["per_month"].items()))
    click.echo(f"per month: {months or '-'}")


@cases.command("merchants")
@CONFIG_OPTION
@SINCE_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON array, most offences first.")
def merchants_command(config_path: Path, since: datetime | None, as_json: bool) -> None:
    """Offences per merchant (cases whose party is a merchant), most first, with the merchant's
    grade (devices.yaml merchants[].grade). Rejected cases are counted apart, not as offences."""
    config = load_or_fail(config_path)
    store = _store(config_path)
    known = {m.id: m for m in config.merchants}
    rows = merchant_offences(store, since)
    for row in rows:
        merchant = known.get(row["merchant_id"])
        row["name"] = merchant.name if merchant else None
        row["grade"] = getattr(merchant, "grade", None) if merchant else None
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        rules = ", ".join(f"{rule} {n}" for rule, n in row["by_rule"].items())
        click.echo(
            f"{row['merchant_id']:<14} {row['name'] or '?':<20} grade {row['grade'] or '-'}"
            f"  offences {row['offences']:>4}  rejected {row['rejected']}  escalated "
            f"{row['escalated']}  repeats {row['repeats']}  last {row['last']}  ({rules})"
        )
    click.echo(f"{len(rows)} merchant(s)", err=True)
