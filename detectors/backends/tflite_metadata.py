"""Class names embedded in a TFLite file: ultralytics appends a zip whose one member holds the
export's metadata (a Python dict literal in 8.x, JSON or YAML elsewhere) with `names`."""

from __future__ import annotations

import ast
import json
import zipfile
from pathlib import Path
from typing import Any

import yaml

MAX_METADATA = 1 << 20
"""Bytes of metadata read at most."""


def _parse(text: str) -> Any:
    for parse in (json.loads, ast.literal_eval, yaml.safe_load):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, yaml.YAMLError):
            continue
    return None


def metadata(weights: Path) -> dict[str, Any]:
    """The embedded metadata, or {} when the file has none (or none that parses)."""
    if not zipfile.is_zipfile(weights):
        return {}
    with zipfile.ZipFile(weights) as archive:
        for info in archive.infolist():
            if info.is_dir() or info.file_size > MAX_METADATA:
                continue
            found = _parse(archive.read(info).decode("utf-8", errors="replace"))
            if isinstance(found, dict) and "names" in found:
                return found
    return {}


def names_of(meta: dict[str, Any]) -> dict[int, str] | None:
    """`names` as {id: name} (a dict, or a list in id order), None when absent or malformed."""
    names = meta.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        return None
    try:
        return {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        return None
