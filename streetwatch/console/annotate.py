"""A camera's newest analysed frame as a person sees it on the Live page: its zones (labelled,
coloured by kind), the tracked boxes ("class id dwell"), the motion regions (thin) and the
left-object regions, drawn with OpenCV onto a copy of the frame and encoded as JPEG."""

from __future__ import annotations

import cv2
import numpy as np

from detectors.liveview import Box, LiveView
from ingest.config import ZoneKind

Colour = tuple[int, int, int]
"""BGR, as OpenCV draws."""

ZONE_COLOURS: dict[str, Colour] = {
    ZoneKind.SHOPFRONT.value: (0, 165, 255),  # orange
    ZoneKind.SIDEWALK.value: (230, 130, 30),  # blue
    ZoneKind.NO_PARKING.value: (60, 40, 230),  # red
    ZoneKind.FIRE_LANE.value: (140, 0, 140),  # purple
    ZoneKind.RESTRICTED.value: (0, 215, 255),  # gold
    ZoneKind.GEOFENCE.value: (160, 160, 160),  # grey
}
OTHER_ZONE: Colour = (160, 160, 160)
TRACK: Colour = (60, 200, 60)  # green
LEFT: Colour = (255, 0, 255)  # magenta: candidate and confirmed left objects
MOTION: Colour = (255, 255, 255)  # white, one pixel
ZONE_FILL_ALPHA = 0.15
MAX_WIDTH = 1280
"""Wider frames are scaled down first: a person's screen shows no more, and every viewer
fetches a few a second."""
JPEG_QUALITY = 80
FONT = cv2.FONT_HERSHEY_SIMPLEX


def zone_colour(kind: str) -> Colour:
    return ZONE_COLOURS.get(kind, OTHER_ZONE)


def css_colour(colour: Colour) -> str:
    """`#rrggbb` of a BGR colour, for the page's legend."""
    b, g, r = colour
    return f"#{r:02x}{g:02x}{b:02x}"


def dwell_text(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def draw(view: LiveView, max_width: int = MAX_WIDTH) -> np.ndarray:
    """The annotated frame: a new image (the view's own is shared with the pipeline)."""
    image = view.image
    height, width = image.shape[:2]
    scale = min(1.0, max_width / width) if width else 1.0
    if scale < 1.0:
        size = (round(width * scale), round(height * scale))
        out = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    else:
        out = image.copy()
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    font_scale = max(0.4, min(0.7, out.shape[1] / 1800))

    def pt(x: float, y: float) -> tuple[int, int]:
        return round(x * scale), round(y * scale)

    def rect(box: Box) -> tuple[tuple[int, int], tuple[int, int]]:
        return pt(box[0], box[1]), pt(box[2], box[3])

    polygons = [
        (zone, np.array([pt(x, y) for x, y in zone.polygon], dtype=np.int32)) for zone in view.zones
    ]
    if polygons:
        fill = out.copy()
        for zone, poly in polygons:
            cv2.fillPoly(fill, [poly], zone_colour(zone.kind.value))
        cv2.addWeighted(fill, ZONE_FILL_ALPHA, out, 1 - ZONE_FILL_ALPHA, 0, dst=out)
    for zone, poly in polygons:
        cv2.polylines(out, [poly], True, zone_colour(zone.kind.value), 2, cv2.LINE_AA)
    for zone, poly in polygons:  # under the tracks' labels: those change, these do not
        top = poly[np.lexsort((poly[:, 0], poly[:, 1]))[0]]
        _label(
            out,
            zone.id,
            (int(top[0]), int(top[1])),
            zone_colour(zone.kind.value),
            font_scale,
            above=False,
        )
    for box in view.motion:
        a, b = rect(box)
        cv2.rectangle(out, a, b, MOTION, 1)
    for box in view.left_regions:
        a, b = rect(box)
        cv2.rectangle(out, a, b, LEFT, 2)
    for live in view.boxes:
        a, b = rect(live.box)
        colour = LEFT if live.subject_id.startswith("o") else TRACK
        cv2.rectangle(out, a, b, colour, 2)
        _label(
            out,
            f"{live.subject} {live.subject_id} {dwell_text(live.dwell_s)}",
            a,
            colour,
            font_scale,
            above=True,
        )
    return out


def encode(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the frame could not be encoded as JPEG")
    return data.tobytes()


def annotate_jpeg(view: LiveView, max_width: int = MAX_WIDTH) -> bytes:
    return encode(draw(view, max_width))


def _label(
    image: np.ndarray,
    text: str,
    at: tuple[int, int],
    colour: Colour,
    font_scale: float,
    *,
    above: bool,
) -> None:
    """`text` on a filled tag of `colour` at `at` (above it when there is room), kept inside
    the image; dark or light lettering, whichever reads on the tag."""
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, 1)
    height, width = image.shape[:2]
    pad = 3
    x = min(max(at[0], 0), max(width - tw - 2 * pad, 0))
    top = at[1] - th - base - 2 * pad if above else at[1]
    if top < 0:
        top = at[1] if above else 0
    top = min(max(top, 0), max(height - th - base - 2 * pad, 0))
    cv2.rectangle(image, (x, top), (x + tw + 2 * pad, top + th + base + 2 * pad), colour, -1)
    b, g, r = colour
    ink = (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + pad, top + pad + th), FONT, font_scale, ink, 1, cv2.LINE_AA)
