"""`streetwatch tokens add|list|remove`: API tokens for machines (the case system).

`add` prints the token once, alone on stdout, so a script can capture it; only its SHA-256
is kept, in tokens.yaml beside the console's users file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from streetwatch.cliconfig import CONFIG_OPTION
from streetwatch.console.tokens import TokenStore, tokens_path
from streetwatch.users import UserError
from streetwatch.users_cli import console_settings, role_option


def _store(config_path: Path) -> TokenStore:
    return TokenStore(tokens_path(console_settings(config_path).users_file))


@click.group()
def tokens() -> None:
    """API tokens for machines calling the console's JSON API."""


@tokens.command()
@click.argument("name")
@role_option("What the machine may do; the case system needs operator to post decisions.")
@CONFIG_OPTION
def add(name: str, role: str, config_path: Path) -> None:
    """Make a token NAME and print it once (only its hash is kept)."""
    store = _store(config_path)
    try:
        _, token = store.add(name, role)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    click.echo(
        f"{store.path}: added token {name} ({role}); it is shown only now, keep it safe",
        err=True,
    )


@tokens.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (never the hashes).")
@CONFIG_OPTION
def list_tokens(as_json: bool, config_path: Path) -> None:
    """List tokens by name and role."""
    try:
        found = _store(config_path).tokens()
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([t.public() for t in found]))
        return
    for entry in found:
        click.echo(f"{entry.name}\t{entry.role.value}\tcreated {entry.created.isoformat()}")


@tokens.command()
@click.argument("name")
@CONFIG_OPTION
def remove(name: str, config_path: Path) -> None:
    """Remove token NAME: machines using it are refused from the next request."""
    store = _store(config_path)
    try:
        store.remove(name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{store.path}: removed token {name}")
