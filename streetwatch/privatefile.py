"""Small private files the console keeps beside its users file (secret key, API tokens).

Written atomically (temp file, fsync, rename, fsync of the folder) with mode 0600 under an
exclusive lock file, and refused on read when group or others may write them: whoever can
write them can let themselves in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


class PrivateFileError(ValueError):
    """An unsafe or unreadable private file; the message is the one-line reason."""


def read_private(path: Path, *, secret: bool = False) -> str | None:
    """The file's text, or None when there is none. Refuses anything but a regular file, one
    group or others may write, and (for a `secret`) one they may read."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise PrivateFileError(f"{path}: not a regular file")
    unsafe = 0o077 if secret else 0o022
    if info.st_mode & unsafe:
        raise PrivateFileError(
            f"{path}: open to group or others (mode {info.st_mode & 0o777:o}); chmod 600 it"
        )
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PrivateFileError(f"{path}: unreadable ({exc})") from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold `<path>.lock` exclusively (creating the folder 0700 if needed)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _temp_with(path: Path, text: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = _temp_with(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_folder(path.parent)


def create_private(path: Path, text: str) -> bool:
    """Create `path` with `text` (0600) only if it does not exist, atomically: a reader never
    sees it half written and two racing creators agree on one. False when it existed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = _temp_with(path, text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    _sync_folder(path.parent)
    return True
