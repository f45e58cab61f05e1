"""Evidence fixtures: real footage (vtest.avi) as a camera ring buffer of JPEG frames, ffprobe."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.evidence.evidence_support import VideoRing, ensure_vtest


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    return ensure_vtest()


@pytest.fixture(scope="session")
def ring(vtest_path: Path) -> VideoRing:
    """The first 30 s of vtest.avi as a camera ring buffer, starting at 2026-11-23 08:00 UTC."""
    return VideoRing.from_file(vtest_path, "cam-1", datetime(2026, 11, 23, 8, 0, tzinfo=UTC), 30.0)


@pytest.fixture(scope="session")
def ffprobe() -> str:
    exe = shutil.which("ffprobe")
    if exe is None:
        pytest.fail("ffprobe not found: `make system-deps` installs Debian's ffmpeg")
    return exe
