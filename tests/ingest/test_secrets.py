"""Secrets from the environment or from an owner-only file named by <NAME>_FILE."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.secrets import SecretError, read_secret

SECRET = "s3cr3t-Value%s"


def test_environment_wins_and_unset_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SW_T_SECRET", raising=False)
    monkeypatch.delenv("SW_T_SECRET_FILE", raising=False)
    assert read_secret("SW_T_SECRET") is None
    monkeypatch.setenv("SW_T_SECRET", SECRET)
    monkeypatch.setenv("SW_T_SECRET_FILE", "/nonexistent")
    assert read_secret("SW_T_SECRET") == SECRET


def test_owner_only_file_is_read_without_its_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    monkeypatch.delenv("SW_T_SECRET", raising=False)
    monkeypatch.setenv("SW_T_SECRET_FILE", str(path))
    assert read_secret("SW_T_SECRET") == SECRET
    path.chmod(0o400)
    assert read_secret("SW_T_SECRET") == SECRET


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_a_file_others_can_read_is_refused_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET)
    path.chmod(mode)
    monkeypatch.delenv("SW_T_SECRET", raising=False)
    monkeypatch.setenv("SW_T_SECRET_FILE", str(path))
    with pytest.raises(SecretError, match=f"mode {mode:04o} lets others read") as error:
        read_secret("SW_T_SECRET")
    assert SECRET not in str(error.value) and "chmod 600" in str(error.value)


@pytest.mark.parametrize(
    ("content", "make", "fragment"),
    [("", "file", "the file is empty"), (None, "missing", "cannot read"), (None, "dir", "regular")],
)
def test_missing_empty_and_odd_files_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, make: str, fragment: str
) -> None:
    path = tmp_path / "secret"
    if make == "file":
        path.write_text(content or "")
        path.chmod(0o600)
    elif make == "dir":
        path.mkdir(mode=0o700)
    monkeypatch.delenv("SW_T_SECRET", raising=False)
    monkeypatch.setenv("SW_T_SECRET_FILE", str(path))
    with pytest.raises(SecretError, match=fragment) as error:
        read_secret("SW_T_SECRET")
    assert "SW_T_SECRET_FILE" in str(error.value)
