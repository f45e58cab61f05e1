"""Where the shared real models and footage live: `../shared/assets/` beside the checkout.

They are data, not project code (see that folder's README for sources and licences): never
copied into the repository. `STREETWATCH_ASSETS` points elsewhere; absent, callers fall back
(tests skip with a message, the demo uses the person model `make footage` installs).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FOOTAGE = REPO / "var" / "footage"
"""What `make footage` fetches from Debian's packages: vtest.avi, dog.jpg, kite.jpg."""

MISSING_HINT = (
    "the shared assets are not beside this checkout (../shared/assets, or set "
    "STREETWATCH_ASSETS); get weights the ordinary way: the ultralytics download of a COCO "
    "YOLO model, or an ONNX/OpenVINO export of it, and name it in devices.yaml"
)


def assets_root() -> Path | None:
    configured = os.environ.get("STREETWATCH_ASSETS")
    root = Path(configured) if configured else REPO.parent / "shared" / "assets"
    return root if root.is_dir() else None


def asset(relative: str) -> Path | None:
    """`models/yolox_nano.onnx`, `footage/...`: the file if the assets are here, else None."""
    root = assets_root()
    if root is None:
        return None
    path = root / relative
    return path if path.exists() else None
