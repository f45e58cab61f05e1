"""Secrets come from the environment, or from a file named by `<NAME>_FILE` (systemd's
LoadCredential, Docker and Kubernetes secrets) that only its owner can read. Never from
devices.yaml, and never echoed: errors name the variable or the file, not the value."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SecretError(ValueError):
    """A secret's file is missing, unreadable, empty or readable by others."""


def read_secret(name: str) -> str | None:
    """`$NAME` (even empty), else the contents of the file `$NAME_FILE` (one trailing newline
    dropped); None when neither is set."""
    value = os.environ.get(name)
    if value is not None:
        return value
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return None
    return _read_protected(Path(path), f"{name}_FILE")


def _read_protected(path: Path, variable: str) -> str:
    try:
        info = path.stat()
    except OSError as exc:
        raise SecretError(
            f"{variable}={path}: cannot read the secret file ({exc.strerror})"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"{variable}={path}: not a regular file")
    if info.st_mode & 0o077:
        raise SecretError(
            f"{variable}={path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read the "
            f"secret; chmod 600 {path}"
        )
    if hasattr(os, "geteuid") and info.st_uid not in (os.geteuid(), 0):
        raise SecretError(f"{variable}={path}: owned by uid {info.st_uid}, not by this user")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"{variable}={path}: cannot read the secret file ({exc})") from None
    text = text[:-1] if text.endswith("\n") else text
    if not text:
        raise SecretError(f"{variable}={path}: the file is empty")
    return text
