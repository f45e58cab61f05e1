"""Camera detection extras: tiled inference for large frames and the left-object detector.

Kept beside `detection.py` so each part of the camera pipeline owns its own settings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ingest.config.common import Finite, Strict


class Tiling(Strict):
    """Sliced inference for frames much larger than the model input (detectors/tiling.py)."""

    enabled: bool = True
    tile_px: int = Field(640, ge=64, le=4096)
    """Side of a square tile in full-frame pixels (about the model's input size)."""
    overlap: Finite = Field(0.2, ge=0, lt=0.9)
    """Share of a tile overlapping its neighbour, so a subject on a seam is whole in one."""
    min_scale: Finite = Field(2.0, ge=1.0)
    """Tile only when the frame's longer side is at least this many times the model input."""
    full_frame: bool = True
    """Also run the whole frame resized once, for subjects larger than a tile."""


class LeftObject(Strict):
    """Class-agnostic detection of goods put down and left in shop-front and sidewalk zones
    (detectors/leftobject.py)."""

    enabled: bool = True
    """Runs only on cameras with a `shopfront` or `sidewalk` zone."""
    settle_s: Finite = Field(5.0, gt=0, le=3600)
    """A new region must stay still this long (uncovered by any person or vehicle) to count."""
    min_area_px: int = Field(400, ge=1)
    """Smallest region, in full-frame pixels."""
    reference: Path | None = None
    """An image of the empty scene the operator saved; else the scene learns itself."""
