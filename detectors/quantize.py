"""INT8 post-training quantization of an OpenVINO YOLO export, calibrated on the camera's own
footage (NNCF). On a 2-core AVX2 box it roughly halves detection time at the same detections.

    .venv/bin/python -m detectors.quantize MODEL_openvino_model/ footage.avi OUT_openvino_model/

Only the model's detection head (box decoding, sigmoid) stays in floating point, as
ultralytics' own INT8 export does.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

STRIDE = 32


def calibration_frames(video: Path, count: int = 100) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    step = max(1, total // count)
    frames, index = [], 0
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(frame)
        index += 1
    capture.release()
    if not frames:
        raise ValueError(f"no frames could be read from {video}")
    return frames


def preprocess(image: np.ndarray, imgsz: int = 640) -> np.ndarray:
    """As ultralytics feeds the model: letterboxed to a multiple of 32, RGB, CHW, 0-1."""
    height, width = image.shape[:2]
    ratio = imgsz / max(height, width)
    resized = cv2.resize(image, (round(width * ratio), round(height * ratio)))
    h = -(-resized.shape[0] // STRIDE) * STRIDE
    w = -(-resized.shape[1] // STRIDE) * STRIDE
    canvas = np.full((h, w, 3), 114, np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0


def quantize(source: Path, video: Path, target: Path, imgsz: int = 640) -> Path:
    import nncf
    import openvino as ov

    xml = next(source.glob("*.xml"), None)
    if xml is None:
        raise FileNotFoundError(f"no OpenVINO model (*.xml) in {source}")
    model = ov.Core().read_model(str(xml))
    frames = calibration_frames(video)
    head = ".*/model.22/.*"  # YOLOv8 detect head: its box decoding stays in float
    ignored = nncf.IgnoredScope(
        patterns=[f"{head}/Add", f"{head}/Sub.*", f"{head}/Mul.*", f"{head}/Div.*", ".*/dfl/.*"],
        types=["Sigmoid"],
        validate=False,
    )
    quantized = nncf.quantize(
        model,
        nncf.Dataset(frames, lambda image: preprocess(image, imgsz)),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(frames),
        ignored_scope=ignored,
    )
    work = target.with_name(target.name + ".part")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ov.save_model(quantized, str(work / xml.name))
    for extra in source.glob("*.yaml"):
        shutil.copy(extra, work / extra.name)
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description="INT8-quantize an OpenVINO YOLO export")
    parser.add_argument("source", type=Path)
    parser.add_argument("video", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--imgsz", type=int, default=640)
    args = parser.parse_args()
    print(quantize(args.source, args.video, args.target, args.imgsz))


if __name__ == "__main__":
    main()
