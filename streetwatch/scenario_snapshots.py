"""Snapshots of cameras and drones: drawn JPEGs of a simple street or of blocks from above."""

from __future__ import annotations

import io
import random
from functools import cache

from PIL import Image, ImageDraw, ImageFont

from ingest.config import Device, DeviceKind
from ingest.readings import Stream
from streetwatch.scenario_context import SimMessage, _Context

SNAPSHOT_PERIOD_S = 10.0
SNAPSHOT_SIZE = (640, 360)


def _snapshots(ctx: _Context, device: Device) -> list[SimMessage]:
    rng = ctx.rng(device, "snapshot")
    topic = ctx.topic(device, Stream.SNAPSHOT)
    messages = []
    for t in ctx.times(SNAPSHOT_PERIOD_S, rng.uniform(0, SNAPSHOT_PERIOD_S)):
        iso = ctx.clock.iso(t)
        label = f"{device.id}  {ctx.clock.at(t).astimezone(ctx.clock.tz):%Y-%m-%d %H:%M:%S %z}"
        jpeg = street_jpeg(label, t, device.id, aerial=device.kind is DeviceKind.DRONE)
        messages.append(SimMessage(t, topic, jpeg, (("ts", iso),)))
    return messages


@cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=16)


_CAR_COLOURS = ((200, 40, 40), (40, 90, 200), (230, 230, 230), (30, 30, 30), (230, 190, 40))


def street_jpeg(label: str, t: float, look: str, *, aerial: bool = False) -> bytes:
    """A 640x360 JPEG of a simple street (or top-down blocks) with `label` written on it.

    `look` seeds the buildings and cars, so one camera keeps its view from frame to frame.
    """
    rng = random.Random(f"{look}/look")
    width, height = SNAPSHOT_SIZE
    image = Image.new("RGB", SNAPSHOT_SIZE, (70, 80, 70) if aerial else (150, 190, 230))
    draw = ImageDraw.Draw(image)
    if aerial:
        _aerial(draw, rng, t, width, height)
    else:
        _street(draw, rng, t, width, height)
    box = draw.textbbox((8, 6), label, font=_font())
    draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
    draw.text((8, 6), label, fill=(255, 255, 255), font=_font())
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=70)
    return out.getvalue()


def _street(draw: ImageDraw.ImageDraw, rng: random.Random, t: float, w: int, h: int) -> None:
    horizon = int(h * 0.45)
    x = 0
    while x < w:
        bw, bh = rng.randint(60, 140), rng.randint(80, horizon)
        shade = rng.randint(120, 200)
        draw.rectangle((x, horizon - bh, x + bw, horizon), fill=(shade, shade - 20, shade - 40))
        for wy in range(horizon - bh + 10, horizon - 15, 22):
            for wx in range(x + 8, x + bw - 12, 20):
                draw.rectangle((wx, wy, wx + 10, wy + 12), fill=(90, 110, 140))
        x += bw + rng.randint(2, 10)
    draw.rectangle((0, horizon, w, h), fill=(110, 110, 115))
    draw.rectangle((0, horizon, w, horizon + 18), fill=(170, 165, 160))
    for lane_x in range(-40, w, 80):
        dash = (lane_x + int(t * 9)) % (w + 80) - 40
        draw.rectangle((dash, int(h * 0.75), dash + 40, int(h * 0.75) + 5), fill=(240, 240, 240))
    for i in range(rng.randint(2, 4)):
        cx = (rng.randint(0, w) + int(t * rng.choice((-1, 1)) * rng.uniform(3, 12))) % w
        cy = int(h * 0.58) + i % 2 * 60
        colour = rng.choice(_CAR_COLOURS)
        draw.rounded_rectangle((cx, cy, cx + 110, cy + 45), radius=10, fill=colour)
        draw.rectangle((cx + 20, cy - 18, cx + 85, cy + 4), fill=colour)
        for wheel in (cx + 15, cx + 75):
            draw.ellipse((wheel, cy + 32, wheel + 22, cy + 54), fill=(20, 20, 20))


def _aerial(draw: ImageDraw.ImageDraw, rng: random.Random, t: float, w: int, h: int) -> None:
    shift = int(t * 6) % 160
    for bx in range(-160, w, 160):
        for by in range(-120, h, 120):
            shade = rng.randint(120, 210)
            x0, y0 = bx + shift + 20, by + 20
            draw.rectangle((x0, y0, x0 + 110, y0 + 75), fill=(shade, shade - 30, shade - 50))
    for rx in range(-160 + shift, w, 160):
        draw.rectangle((rx, 0, rx + 18, h), fill=(100, 100, 105))
    for ry in range(0, h, 120):
        draw.rectangle((0, ry, w, ry + 18), fill=(100, 100, 105))
