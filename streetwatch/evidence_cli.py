"""`streetwatch evidence verify` and `streetwatch cases list|show`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from evidence.cases import CaseStore, UnknownCase
from evidence.keys import KeyFileError, Verifier
from evidence.package import MANIFEST
from evidence.settings import evidence_paths
from evidence.verify import Report, is_evidence_root, verify_chain, verify_package
from streetwatch.cliconfig import CONFIG_OPTION, load_or_fail


@click.group()
def evidence() -> None:
    """Evidence packages: verify hashes, signatures and the chain."""


@evidence.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The box's public key (PEM). Default: the key named in devices.yaml, if it exists.",
)
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(path: Path, public_key: Path | None, config_path: Path, as_json: bool) -> None:
    """Check a package folder, or an evidence root (every package and the hash chain)."""
    verifier, source = _verifier(public_key, config_path)
    if (path / MANIFEST).exists() or not is_evidence_root(path):
        report, _ = verify_package(path, verifier)
    else:
        report = verify_chain(path, verifier)
    report.key_source = report.key_source or source
    _print(report, path, as_json)
    if not report.ok:
        raise click.ClickException(
            f"{path}: {len(report.findings)} finding(s): "
            + ", ".join(sorted({f.kind for f in report.findings}))
        )


def _verifier(public_key: Path | None, config_path: Path) -> tuple[Verifier | None, str]:
    try:
        if public_key is not None:
            return Verifier.from_pem(public_key), str(public_key)
        if config_path.exists():
            pub = evidence_paths(load_or_fail(config_path)).public_key
            if pub.exists():
                return Verifier.from_pem(pub), str(pub)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    return None, "the key named in each manifest (not pinned: pass --public-key)"


def _print(report: Report, path: Path, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    for finding in report.findings:
        click.echo(str(finding))
    state = "ok" if report.ok else "FAILED"
    click.echo(
        f"{path}: {state} — {report.packages} package(s), {report.pruned} pruned link(s), "
        f"{len(report.findings)} finding(s); key: {report.key_source}",
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
