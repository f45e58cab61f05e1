"""Clip encoding (H.264 MP4 through PyAV) and annotated snapshots (OpenCV drawing).

`write_clip` encodes the JPEG ring of sources that deliver raw frames; a camera's own H.264/H.265
packets are cut by stream copy instead (`evidence.clips`)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from ingest.frames import EncodedFrame

Box = tuple[float, float, float, float]


def decode(frame: EncodedFrame) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"frame {frame.device_id}#{frame.index} is not a decodable JPEG")
    return image


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def _decoded(frames: Sequence[EncodedFrame], out: queue.Queue) -> None:
    """Decode JPEGs (FFmpeg, GIL released) on a worker thread so x264 overlaps with it."""
    decoder = av.CodecContext.create("mjpeg", "r")
    try:
        for encoded in frames:
            try:
                decoded = decoder.decode(av.Packet(encoded.jpeg))
            except av.error.FFmpegError:
                decoded = []
            out.put((encoded, decoded[0] if decoded else None))
    finally:
        out.put(None)


def write_clip(
    frames: Sequence[EncodedFrame], path: Path, *, crf: int = 26, preset: str = "veryfast"
) -> dict[str, float | int]:
    """H.264 in MP4, frame times kept (variable frame rate, millisecond time base), its index
    (`moov`) at the front (`+faststart`) so a browser starts playing before the whole file.

    The JPEGs are decoded by FFmpeg straight to YUV and handed to x264 as they are (full-range
    4:2:0, as JPEG stores them): no round trip through BGR. Undecodable frames are skipped and
    counted. Returns clip facts.
    """
    if not frames:
        raise ValueError("no frames for the clip")
    span = (frames[-1].ts - frames[0].ts).total_seconds()
    rate = round((len(frames) - 1) / span) if span > 0 and len(frames) > 1 else 10
    rate = max(1, min(rate, 120))
    time_base = Fraction(1, 1000)
    pipe: queue.Queue = queue.Queue(maxsize=16)
    worker = threading.Thread(target=_decoded, args=(frames, pipe), daemon=True)
    worker.start()
    skipped = written = 0
    width = height = 0
    try:
        with av.open(
            str(path), mode="w", format="mp4", options={"movflags": "+faststart"}
        ) as container:
            stream = None
            last_pts = -1
            while (item := pipe.get()) is not None:
                encoded, video = item
                if video is None:
                    skipped += 1
                    continue
                if stream is None:
                    width, height = (video.width // 2) * 2, (video.height // 2) * 2
                    stream = container.add_stream("libx264", rate=rate)
                    stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
                    stream.time_base = time_base
                    stream.codec_context.time_base = time_base
                    stream.options = {"crf": str(crf), "preset": preset}
                if (video.format.name, video.width, video.height) != ("yuvj420p", width, height):
                    video = video.reformat(width=width, height=height, format="yuvj420p")
                pts = round((encoded.ts - frames[0].ts).total_seconds() * 1000)
                pts = max(pts, last_pts + 1)
                last_pts = pts
                video.pts = pts
                video.time_base = time_base
                video.pict_type = PictureType.NONE  # a decoded JPEG says "I": all-IDR otherwise
                for packet in stream.encode(video):
                    container.mux(packet)
                written += 1
            if stream is None:
                raise ValueError(f"none of the {len(frames)} frames is a decodable JPEG")
            for packet in stream.encode():
                container.mux(packet)
    finally:
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                pipe.get(timeout=0.1)
    return {
        "frames": written,
        "frames_skipped": skipped,
        "width": width,
        "height": height,
        "duration_s": span,
    }


@dataclass(frozen=True, slots=True)
class Overlay:
    """What is burned into an annotated snapshot."""

    device_id: str
    ts: datetime
    tz: ZoneInfo
    boxes: Sequence[tuple[Box, str]] = ()
    """Subject boxes (pixels x1, y1, x2, y2) with their labels (e.g. 'bicycle #17')."""
    zone: Sequence[tuple[float, float]] | None = None
    zone_label: str = ""
    caption: str = ""


def annotate(image: np.ndarray, overlay: Overlay) -> np.ndarray:
    out = image.copy()
    if overlay.zone:
        pts = np.array([[round(x), round(y)] for x, y in overlay.zone], np.int32)
        cv2.polylines(out, [pts], True, (0, 200, 255), 2, cv2.LINE_AA)
        x, y = pts[0]
        _text(out, overlay.zone_label, (int(x) + 4, max(int(y) - 6, 14)), (0, 200, 255))
    for (x1, y1, x2, y2), label in overlay.boxes:
        p1, p2 = (round(x1), round(y1)), (round(x2), round(y2))
        cv2.rectangle(out, p1, p2, (0, 0, 255), 2, cv2.LINE_AA)
        _text(out, label, (p1[0], max(p1[1] - 6, 14)), (0, 0, 255))
    utc = overlay.ts.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    local = overlay.ts.astimezone(overlay.tz).strftime("%Y-%m-%d %H:%M:%S %z")
    banner = f"{overlay.device_id}  {utc}  ({local} {overlay.tz.key})"
    cv2.rectangle(out, (0, 0), (out.shape[1], 22 if not overlay.caption else 42), (0, 0, 0), -1)
    _text(out, banner, (6, 16), (255, 255, 255))
    if overlay.caption:
        _text(out, overlay.caption, (6, 36), (255, 255, 255))
    return out


def _text(image: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int]) -> None:
    if not text:
        return
    # OpenCV's Hershey fonts are ASCII only; non-ASCII (e.g. Chinese category names) become '?'
    text = text.encode("ascii", "replace").decode()
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
