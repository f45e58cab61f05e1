"""Real footage for the video source tests (`make footage` provides it)."""

from __future__ import annotations

from pathlib import Path

import pytest

VTEST = Path(__file__).resolve().parents[3] / "var" / "footage" / "vtest.avi"


@pytest.fixture(scope="session")
def vtest() -> Path:
    if not VTEST.is_file():
        pytest.fail(f"{VTEST} is missing: run `make footage`")
    return VTEST
