"""Make `import torchvision` work beside a CPU-only torch whose torchvision has no usable ops.

The registries carry only CUDA builds of torchvision. Beside the CPU torch wheel their compiled
ops (`torchvision/_C.so`, linked against libtorch_cuda) fail to load, and torchvision's import
then dies registering a fake kernel for `torchvision::nms` ("operator torchvision::nms does not
exist"). ultralytics imports torchvision while warming a model up, so detection cannot start.

`ensure_torchvision_ops()` runs before anything imports torchvision. It does nothing when the
ops are there or load (an ordinary install). Only when `_C` fails to load does it define the
`torchvision::nms` schema (and `qnms`, whose fake kernel torchvision also registers) with a
pure-torch greedy NMS, and afterwards tells torchvision that its ops are present so that
`torchvision.ops.nms` reaches that kernel. Other compiled ops (roi_align, deform_conv2d, ...)
stay missing and fail as torchvision normally reports; the detector needs only NMS.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_NAMESPACE = "torchvision"
_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_library: torch.library.Library | None = None
_state: str | None = None


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS as torchvision defines it: indices of kept boxes by decreasing score."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    boxes = boxes.float()
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order]
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    ix1 = torch.maximum(x1[:, None], x1[None, :])
    iy1 = torch.maximum(y1[:, None], y1[None, :])
    ix2 = torch.minimum(x2[:, None], x2[None, :])
    iy2 = torch.minimum(y2[:, None], y2[None, :])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    iou = inter / (areas[:, None] + areas[None, :] - inter)
    overlaps = (iou > iou_threshold).cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i]
    return order[torch.tensor(keep, dtype=torch.int64, device=order.device)]


def _native_ops_load() -> bool:
    """Whether torchvision's own compiled ops are (or can be) registered with this torch."""
    if hasattr(torch.ops.torchvision, "nms"):
        return True
    spec = importlib.util.find_spec(_NAMESPACE)
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to repair
    folder = Path(spec.submodule_search_locations[0])
    for candidate in sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(candidate))
        except (OSError, RuntimeError) as exc:
            log.info("torchvision ops do not load (%s); using the pure-torch NMS", exc)
            return False
        return hasattr(torch.ops.torchvision, "nms")
    return False


def ensure_torchvision_ops() -> str:
    """Repair torchvision's missing ops if needed; returns `native`, `absent` or `fallback`.

    Must run before torchvision is first imported; idempotent.
    """
    global _library, _state
    if _state is not None:
        return _state
    if importlib.util.find_spec(_NAMESPACE) is None:
        _state = "absent"
        return _state
    if _NAMESPACE in sys.modules and not hasattr(torch.ops.torchvision, "nms"):
        raise RuntimeError("torchvision was imported before ensure_torchvision_ops() could run")
    if _native_ops_load():
        _state = "native"
        return _state
    _library = torch.library.Library(_NAMESPACE, "DEF")
    for name in ("nms", "qnms"):
        _library.define(name + _SCHEMA)
        _library.impl(name, nms, "CPU")
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True
    _state = "fallback"
    return _state
