"""The `timeseries` section: shipping the journal to PostgreSQL/TimescaleDB."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from ingest.config.broker import Reconnect
from ingest.config.common import _ENV_NAME, SafeId, Strict
from ingest.secrets import SecretError, read_secret
from ingest.yamlsource import ConfigError


class Timeseries(Strict):
    """Shipping the journal to PostgreSQL/TimescaleDB (streetwatch/sink)."""

    dsn_env: str = "STREETWATCH_PG_DSN"
    """Name of the environment variable that holds the libpq DSN (secrets stay out of the file)."""
    origin: SafeId | None = None
    """This box's name in the database's cursor table; defaults to site.id."""
    batch_size: int = Field(20_000, ge=1, le=500_000)
    flush_interval_ms: int = Field(500, ge=1, le=60_000)
    retry: Reconnect = Reconnect(min_delay_s=0.5, max_delay_s=60.0)
    journal_warn_bytes: int = Field(2 * 1024**3, ge=1024 * 1024)
    """Warn (and count) once the journal file grows past this while rows wait to be shipped."""
    chunk_interval_h: int = Field(24, ge=1, le=24 * 366)
    synchronous_commit: bool = False
    """Off by default: the cursor commits with its rows, so a commit lost in a database crash
    loses rows and cursor together, and the sink ships them again when it reconnects."""
    compress_after_days: int | None = Field(7, ge=1)
    retention_days: int | None = Field(400, ge=1)

    dsn: Any = Field(None, exclude=True, repr=False)

    @field_validator("dsn")
    @classmethod
    def _no_dsn_in_file(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "secrets are not read from the file; export the DSN in an environment "
                "variable and name that variable in 'dsn_env'"
            )

    @field_validator("dsn_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(
                "expected the name of an environment variable, e.g. STREETWATCH_PG_DSN"
            )
        return value

    @model_validator(mode="after")
    def _compress_before_drop(self) -> Timeseries:
        if (
            self.compress_after_days is not None
            and self.retention_days is not None
            and self.compress_after_days >= self.retention_days
        ):
            raise ValueError("compress_after_days must be smaller than retention_days")
        return self

    def resolve_dsn(self) -> str:
        try:
            value = read_secret(self.dsn_env)
        except SecretError as exc:
            raise ConfigError([f"timeseries: {exc}"]) from None
        if not value:
            raise ConfigError([f"timeseries: environment variable {self.dsn_env} is not set"])
        return value
