"""Privacy: blur bystanders' faces in the annotated copies; the raw copies stay as shot.

The detector is one that ships with OpenCV: YuNet (`cv2.FaceDetectorYN`, an .onnx model) or a
Haar cascade (`cv2.CascadeClassifier`, an .xml file, where the OpenCV build still has it).
Without a configured model, `detector_for` takes YuNet from the shared assets, else Debian's
frontal-face cascade (package opencv-data). YuNet at min_score 0.6 finds all 43 annotated faces
of the dlib set by centre-in-box, 42 of 43 at IoU >= 0.5 (bench/plates.py).
A face inside the subject's own box is not a bystander's and is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from detectors.assets import asset
from ingest.config import EvidenceBlur

Rect = tuple[int, int, int, int]
"""x, y, width, height in pixels."""
FaceDetector = Callable[[np.ndarray], list[Rect]]


YUNET_ASSET = "models/face_detection_yunet.onnx"
DEBIAN_CASCADE = Path("/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml")


class BlurUnavailable(RuntimeError):
    pass


def default_model() -> Path | None:
    """YuNet from the shared assets, else Debian's Haar cascade where this OpenCV can run it."""
    yunet = asset(YUNET_ASSET)
    if yunet is not None:
        return yunet
    if hasattr(cv2, "CascadeClassifier") and DEBIAN_CASCADE.is_file():
        return DEBIAN_CASCADE
    return None


def detector_for(settings: EvidenceBlur) -> FaceDetector:
    """The configured face detector, or the default one when no model is named."""
    if settings.model is not None:
        return load_detector(settings)
    model = default_model()
    if model is None:
        raise BlurUnavailable(
            "evidence.blur.enabled: no evidence.blur.model and no default face detector: "
            f"neither {YUNET_ASSET} in the shared assets nor {DEBIAN_CASCADE} (apt-get install "
            f"opencv-data) with an OpenCV that has CascadeClassifier ({cv2.__version__})"
        )
    return load_detector(settings.model_copy(update={"model": model}))


def load_detector(settings: EvidenceBlur) -> FaceDetector:
    """Exactly the configured model (`detector_for` supplies the default)."""
    model = settings.model
    if model is None:
        raise BlurUnavailable(
            "evidence.blur.enabled needs evidence.blur.model: a YuNet .onnx "
            "(face_detection_yunet_2023mar.onnx from opencv_zoo) or a Haar cascade .xml"
        )
    if not Path(model).is_file():
        raise BlurUnavailable(f"evidence.blur.model: {model} does not exist")
    if str(model).endswith(".onnx"):
        yunet = cv2.FaceDetectorYN.create(str(model), "", (320, 320), settings.min_score)

        def detect_yunet(image: np.ndarray) -> list[Rect]:
            yunet.setInputSize((image.shape[1], image.shape[0]))
            _, faces = yunet.detect(image)
            if faces is None:
                return []
            return [tuple(int(v) for v in f[:4]) for f in faces]  # type: ignore[misc]

        return detect_yunet
    if not hasattr(cv2, "CascadeClassifier"):
        raise BlurUnavailable(
            f"evidence.blur.model: {model} is a Haar cascade, but this OpenCV "
            f"({cv2.__version__}) has no CascadeClassifier; use a YuNet .onnx model"
        )
    cascade = cv2.CascadeClassifier(str(model))  # type: ignore[attr-defined]
    if cascade.empty():
        raise BlurUnavailable(f"evidence.blur.model: {model} is not a usable cascade")

    def detect_haar(image: np.ndarray) -> list[Rect]:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return [tuple(map(int, r)) for r in cascade.detectMultiScale(grey, 1.1, 4)]  # type: ignore[misc]

    return detect_haar


def blur_bystanders(
    image: np.ndarray,
    detect: FaceDetector,
    subjects: Sequence[tuple[float, float, float, float]] = (),
) -> tuple[np.ndarray, int]:
    """A copy with every detected face blurred unless its centre lies in a subject box."""
    out = image.copy()
    blurred = 0
    height, width = image.shape[:2]
    for x, y, w, h in detect(image):
        cx, cy = x + w / 2, y + h / 2
        if any(x1 <= cx <= x2 and y1 <= cy <= y2 for x1, y1, x2, y2 in subjects):
            continue
        x0, y0 = max(0, x), max(0, y)
        x1_, y1_ = min(width, x + w), min(height, y + h)
        if x1_ <= x0 or y1_ <= y0:
            continue
        region = out[y0:y1_, x0:x1_]
        k = max(3, (min(region.shape[:2]) // 2) | 1)
        out[y0:y1_, x0:x1_] = cv2.GaussianBlur(region, (k, k), 0)
        blurred += 1
    return out, blurred
