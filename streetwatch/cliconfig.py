"""The `-c devices.yaml` option, and loading it for a command: problems on stderr, then a
one-line reason."""

from __future__ import annotations

from pathlib import Path

import click

from ingest.config import SiteConfig, load_config
from ingest.yamlsource import ConfigError

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path("devices.yaml"),
    show_default=True,
    help="The site description.",
)


def load_or_fail(config_path: Path) -> SiteConfig:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise click.ClickException(
            f"{config_path}: {len(exc.problems)} problem(s), see above"
        ) from None
