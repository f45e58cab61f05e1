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
    tile_px: int | None = Field(None, ge=64, le=4096)
    """Side of a square tile in full-frame pixels; None: the model's input size (a larger tile
    is shrunk to it: YOLOX-Nano at 416 found 9 of kite.jpg's 12 people with 640-px tiles, 10
    with 416)."""
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
    width: int = Field(320, ge=64, le=4096)
    """Frames are modelled downscaled to this width."""
    threshold: int = Field(18, ge=1, le=255)
    """Colour change (0-255, any channel) from the background for a pixel to count as new."""
    background_s: Finite = Field(120.0, gt=0, le=86400)
    """Time constant of the long-term (empty scene) background: how fast it follows slow
    changes of light where nothing new stands."""
    still_s: Finite = Field(1.0, gt=0, le=60)
    """Time constant of the short-term background: a region is still once it matches it."""
    trust_s: Finite = Field(3.0, ge=0, le=3600)
    """A pixel of the learnt background is trusted once it has matched the frame, quiet and
    uncovered, this long; until then whatever stands still there is learnt as scene (people
    in the first frame leave no ghosts; goods already out when the camera starts are scene
    unless a `reference` says otherwise)."""
    cover_hold_s: Finite = Field(2.0, ge=0, le=60)
    """A pixel under a tracked person or vehicle counts as covered this long after it left."""
    exit_s: Finite = Field(3.0, gt=0, le=3600)
    """A left object whose region matches the background again this long is gone."""
    max_area_share: Finite = Field(0.25, gt=0, le=1)
    """A still region larger than this share of the watched zones is light or view, not goods."""
    camera_shift_px: Finite = Field(1.0, gt=0)
    """View shift (in modelled pixels) against the background that means the camera moved."""
    global_change_share: Finite = Field(0.5, gt=0, le=1)
    """Share of the frame differing from the background at once: a light switched, a view
    changed; the background is learnt again."""
