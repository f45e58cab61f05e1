"""Real models and footage for tests: the shared assets, or a skip that says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.assets import FOOTAGE, MISSING_HINT, asset


def shared_asset(relative: str) -> Path:
    """A file under ../shared/assets; the test is skipped (with how to get one) without it."""
    path = asset(relative)
    if path is None:
        pytest.skip(f"{relative}: {MISSING_HINT}")
    return path


def debian_still(name: str) -> Path:
    """dog.jpg, kite.jpg: what `make footage` takes from Debian's darknet package."""
    path = FOOTAGE / name
    if not path.exists():
        pytest.skip(f"{path} missing: run `make footage`")
    return path
