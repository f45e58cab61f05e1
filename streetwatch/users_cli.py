"""`streetwatch users add|list|remove|passwd`: the console's users file (console.users_file).

Passwords come from a hidden prompt asked twice, or from one line of stdin with
--password-stdin; never from an argument, which would land in shell history and `ps`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from ingest.config import Console
from streetwatch.cliconfig import CONFIG_OPTION, load_or_fail
from streetwatch.users import Role, UserError, UserStore, check_name

PASSWORD_STDIN = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of prompting.",
)


def role_option(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--role", required=True, type=click.Choice([r.value for r in Role]), help=help_text
    )


def console_settings(config_path: Path) -> Console:
    console = load_or_fail(config_path).console
    assert console.users_file is not None  # load_config resolves it
    return console


def _store(config_path: Path) -> UserStore:
    console = console_settings(config_path)
    return UserStore(console.users_file, min_password_length=console.min_password_length)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    return click.prompt(
        "Password", hide_input=True, confirmation_prompt=True, default="", show_default=False
    )


def _fail(exc: UserError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group()
def users() -> None:
    """The operator console's users, roles and passwords."""


@users.command()
@click.argument("name")
@role_option("viewer reads; operator also edits zones and reviews; admin also edits users, rules.")
@PASSWORD_STDIN
@CONFIG_OPTION
def add(name: str, role: str, password_stdin: bool, config_path: Path) -> None:
    """Add user NAME with a new password."""
    store = _store(config_path)
    try:
        check_name(name)  # before asking for a password that would be thrown away
        if any(u.name.casefold() == name.casefold() for u in store.users()):
            raise UserError(f"user {name!r} already exists")
        store.add(name, role, _password(password_stdin))
    except UserError as exc:
        raise _fail(exc) from None
    click.echo(f"{store.path}: added {name} ({role})")


@users.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (never the hashes).")
@CONFIG_OPTION
def list_users(as_json: bool, config_path: Path) -> None:
    """List users and roles."""
    try:
        found = _store(config_path).users()
    except UserError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps([u.public() for u in found]))
        return
    for user in found:
        shown = user.public()
        click.echo(f"{user.name}\t{user.role.value}\tpassword set {shown['password_changed']}")


@users.command()
@click.argument("name")
@CONFIG_OPTION
def remove(name: str, config_path: Path) -> None:
    """Remove user NAME."""
    store = _store(config_path)
    try:
        store.remove(name)
    except UserError as exc:
        raise _fail(exc) from None
    click.echo(f"{store.path}: removed {name}")


@users.command()
@click.argument("name")
@PASSWORD_STDIN
@CONFIG_OPTION
def passwd(name: str, password_stdin: bool, config_path: Path) -> None:
    """Set a new password for user NAME."""
    store = _store(config_path)
    try:
        check_name(name)
        if store.get(name) is None:
            raise UserError(f"no user {name!r} in {store.path}")
        store.set_password(name, _password(password_stdin))
    except UserError as exc:
        raise _fail(exc) from None
    click.echo(f"{store.path}: new password for {name}")
