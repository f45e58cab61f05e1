"""Why OpenCV could not open a local file, as precisely as can be told from outside."""

from __future__ import annotations

from pathlib import Path


def unreadable(path: str | Path, verdict: str) -> str:
    """The reason a file did not open: missing, unreadable, not a regular file or empty; else
    `verdict`, formatted with the file's `size` (OpenCV read it and did not recognise it)."""
    file = Path(str(path).removeprefix("file://"))
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        return "cannot open: no such file"
    except OSError as exc:
        return f"cannot open: {exc.strerror}"
    if not file.is_file():
        return "cannot open: not a regular file"
    if size == 0:
        return "cannot open: the file is empty"
    return "cannot open: " + verdict.format(size=size)
