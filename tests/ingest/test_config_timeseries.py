"""The `timeseries:` section of devices.yaml: defaults, limits, and errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import ConfigError, Timeseries, load_config

BASE = """\
site:
  id: ts-site
devices:
  - id: gps-1
    kind: gps
"""


def load(tmp_path: Path, section: str) -> object:
    path = tmp_path / "devices.yaml"
    path.write_text(BASE + section)
    return load_config(path)


def problems(tmp_path: Path, section: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, section)
    return caught.value.problems


def test_absent_section_means_no_sink(tmp_path: Path) -> None:
    assert load(tmp_path, "").timeseries is None  # type: ignore[attr-defined]


def test_full_section(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
timeseries:
  dsn_env: BOX_PG_DSN
  origin: box-17
  batch_size: 5000
  flush_interval_ms: 250
  retry: {min_delay_s: 0.5, max_delay_s: 120}
  journal_warn_bytes: 10737418240
  chunk_interval_h: 12
  compress_after_days: 3
  retention_days: 90
""",
    )
    ts = config.timeseries  # type: ignore[attr-defined]
    assert (ts.dsn_env, ts.origin, ts.batch_size, ts.flush_interval_ms) == (
        "BOX_PG_DSN", "box-17", 5000, 250,
    )  # fmt: skip
    assert (ts.retry.min_delay_s, ts.retry.max_delay_s) == (0.5, 120)
    assert (ts.chunk_interval_h, ts.compress_after_days, ts.retention_days) == (12, 3, 90)


def test_policies_can_be_switched_off(tmp_path: Path) -> None:
    ts = load(tmp_path, "timeseries: {compress_after_days: null, retention_days: null}\n")
    assert ts.timeseries.retention_days is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("section", "line", "expected"),
    [
        (
            "timeseries:\n  dsn: postgresql://u:secret@db/x\n",
            7,
            "timeseries.dsn: secrets are not read from the file; export the DSN in"
            " an environment variable and name that variable in 'dsn_env'",
        ),
        ("timeseries:\n  dsn_env: 'my-dsn'\n", 7, "timeseries.dsn_env: expected"),
        ("timeseries:\n  batch_size: 0\n", 7, "timeseries.batch_size: Input should be greater"),
        ("timeseries:\n  flush_interval_ms: fast\n", 7, "timeseries.flush_interval_ms: Input"),
        (
            "timeseries:\n  retry:\n    min_delay_s: 10\n    max_delay_s: 1\n",
            8,
            "timeseries.retry: min_delay_s is larger than max_delay_s",
        ),
        (
            "timeseries:\n  compress_after_days: 30\n  retention_days: 30\n",
            7,
            "timeseries: compress_after_days must be smaller than retention_days",
        ),
        ("timeseries:\n  journal_warn_bytes: 10\n", 7, "timeseries.journal_warn_bytes: Input"),
        ("timeseries:\n  chunk_interval: 1d\n", 7, "timeseries.chunk_interval: unknown field"),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, section: str, line: int, expected: str
) -> None:
    found = problems(tmp_path, section)
    assert len(found) == 1, found
    where, _, rest = found[0].partition(": ")
    assert where == f"{tmp_path / 'devices.yaml'}:{line}"
    assert rest.startswith(expected), rest
    assert "u:secret@" not in found[0]  # a DSN is never echoed back


def test_dsn_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    ts = Timeseries(dsn_env="BOX_PG_DSN")
    monkeypatch.delenv("BOX_PG_DSN", raising=False)
    with pytest.raises(ConfigError, match="environment variable BOX_PG_DSN is not set"):
        ts.resolve_dsn()
    monkeypatch.setenv("BOX_PG_DSN", "host=db dbname=streetwatch")
    assert ts.resolve_dsn() == "host=db dbname=streetwatch"
