"""Evidence fixtures: real footage (vtest.avi), a ring buffer of its JPEG frames, a site, a
journal with real sensor readings, violations."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.evidence.evidence_support import (
    FOOTAGE,
    VideoRing,
    make_violation,
    site_config,
)

REPO = Path(__file__).resolve().parents[2]

__all__ = ["make_violation"]


def _fetch_vtest(target: Path) -> None:
    """Debian's opencv-doc ships vtest.avi (the Makefile's `footage` target does the same)."""
    work = target.parent / ".opencv-doc"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=work, check=True)
    deb = next(work.glob("opencv-doc_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
    source = work / "x/usr/share/doc/opencv-doc/examples/data/vtest.avi"
    tmp = target.with_suffix(".part")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    path = REPO / FOOTAGE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _fetch_vtest(path)
        except (OSError, subprocess.CalledProcessError, StopIteration) as exc:
            pytest.fail(f"vtest.avi missing and could not be fetched from opencv-doc: {exc}")
    return path


@pytest.fixture(scope="session")
def ring(vtest_path: Path) -> VideoRing:
    """The first 30 s of vtest.avi as a camera ring buffer, starting at 2026-11-23 08:00 UTC."""
    return VideoRing.from_file(vtest_path, "cam-1", datetime(2026, 11, 23, 8, 0, tzinfo=UTC), 30.0)


@pytest.fixture
def config(tmp_path: Path):
    return site_config(tmp_path)


@pytest.fixture(scope="session")
def ffprobe() -> str:
    exe = shutil.which("ffprobe")
    if exe is None:
        pytest.fail("ffprobe not found: `make system-deps` installs Debian's ffmpeg")
    return exe


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def t0() -> datetime:
    return datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def later():
    return lambda base, s: base + timedelta(seconds=s)
