"""The Live page: each camera's newest analysed frame with what the pipeline saw in it, and the
camera's frames/s and detector time.

The JPEG of a frame is drawn and encoded once (the first viewer to ask after a new frame does
it, in the threadpool, under the camera's lock) and the same bytes go to every other viewer
until the camera analyses its next frame.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from detectors.liveview import LiveView
from streetwatch.console.annotate import (
    LEFT,
    MOTION,
    TRACK,
    annotate_jpeg,
    css_colour,
    zone_colour,
)
from streetwatch.console.devicestatus import camera_figures
from streetwatch.console.security import Principal, principal
from streetwatch.console.templating import page

router = APIRouter()

NO_PIPELINE = "no pipeline is running: the console was started without `streetwatch run`"
LEGEND = (
    ("tracked subject", css_colour(TRACK)),
    ("left object", css_colour(LEFT)),
    ("motion", css_colour(MOTION)),
)


class LiveTrack(BaseModel):
    id: str = Field(description="`t7` a detector's track, `o3` a left object, `s2` a stall.")
    subject: str
    dwell_s: float
    zones: list[str]
    box: tuple[float, float, float, float]


class LiveZone(BaseModel):
    id: str
    kind: str
    colour: str = Field(description="`#rrggbb`: how the zone is drawn on the live frame.")


class CameraLive(BaseModel):
    id: str
    name: str
    kind: str
    fps: float | None = Field(description="Analysed frames per second over the last seconds.")
    read_fps: float | None = Field(description="Frames read from the stream per second.")
    detect_ms: float | None = Field(description="Detector milliseconds per analysed frame.")
    frame_index: int | None
    last_frame_ts: datetime | None
    full_frame: bool | None = Field(description="The newest frame had a full-frame check.")
    width: int | None
    height: int | None
    tracks: list[LiveTrack]
    motion_regions: int
    left_regions: int
    zones: list[LiveZone]
    image_url: str


def _cameras(request: Request) -> dict[str, Any]:
    pipeline = request.app.state.ctx.pipeline
    if pipeline is None:
        raise HTTPException(503, NO_PIPELINE)
    return pipeline.cameras


def _zones(zones: Any) -> list[LiveZone]:
    return [
        LiveZone(id=z.id, kind=z.kind.value, colour=css_colour(zone_colour(z.kind.value)))
        for z in zones
    ]


def camera_live(device_id: str, camera: Any) -> CameraLive:
    figures = camera_figures(camera)
    view: LiveView | None = camera.live
    device = camera.device
    height, width = view.image.shape[:2] if view is not None else (None, None)
    return CameraLive(
        id=device_id,
        name=device.name,
        kind=device.kind.value,
        fps=figures.fps,
        read_fps=figures.read_fps,
        detect_ms=figures.detect_ms,
        frame_index=view.index if view is not None else None,
        last_frame_ts=view.ts if view is not None else None,
        full_frame=view.full if view is not None else None,
        width=width,
        height=height,
        tracks=_tracks(view),
        motion_regions=len(view.motion) if view is not None else 0,
        left_regions=len(view.left_regions) if view is not None else 0,
        zones=_zones(view.zones if view is not None else device.zones),
        image_url=f"/api/v1/cameras/{device_id}/live.jpg",
    )


def _tracks(view: LiveView | None) -> list[LiveTrack]:
    if view is None:
        return []
    return [
        LiveTrack(
            id=b.subject_id,
            subject=b.subject,
            dwell_s=round(b.dwell_s, 1),
            zones=list(b.zones),
            box=b.box,
        )
        for b in sorted(view.boxes, key=lambda b: -b.dwell_s)
    ]


class _Encoded:
    """The newest view's JPEG, per camera."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.view: LiveView | None = None
        self.jpeg = b""


_encoded: WeakKeyDictionary[Any, _Encoded] = WeakKeyDictionary()
_encoded_lock = threading.Lock()


def live_jpeg(camera: Any, view: LiveView) -> bytes:
    """The annotated JPEG of `view`, encoded at most once however many viewers ask."""
    with _encoded_lock:
        slot = _encoded.get(camera)
        if slot is None:
            slot = _encoded[camera] = _Encoded()
    with slot.lock:
        if slot.view is not view:
            slot.jpeg = annotate_jpeg(view)
            slot.view = view
        return slot.jpeg


def _etag(view: LiveView) -> str:
    return f'"{view.device_id}-{view.index}-{int(view.ts.timestamp() * 1000)}"'


@router.get("/live", include_in_schema=False)
def live_page(request: Request) -> HTMLResponse:
    pipeline = request.app.state.ctx.pipeline
    cameras = [] if pipeline is None else [camera_live(i, c) for i, c in pipeline.cameras.items()]
    return page(
        request,
        "live.html",
        "live",
        cameras=cameras,
        running=pipeline is not None,
        no_pipeline=NO_PIPELINE,
        legend=LEGEND,
    )


@router.get("/api/v1/cameras", tags=["live"])
def cameras_api(
    request: Request, who: Annotated[Principal, Depends(principal)]
) -> list[CameraLive]:
    """Every camera the box analyses: frames/s and detector ms over the last few seconds, its
    newest analysed frame's time and the tracks in it with their dwell."""
    return [camera_live(device_id, camera) for device_id, camera in _cameras(request).items()]


@router.get(
    "/api/v1/cameras/{device_id}/live.jpg",
    tags=["live"],
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}},
            "description": "The newest analysed frame with zones, tracks and regions drawn.",
        },
        304: {"description": "The frame named in If-None-Match is still the newest."},
        404: {"description": "No camera of that id is analysed here."},
        503: {"description": "No pipeline, or the camera has analysed no frame yet."},
    },
)
def live_jpg(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    device_id: Annotated[str, Path(max_length=128)],
) -> Response:
    """The camera's newest analysed frame, annotated, as JPEG. Its ETag names the frame, so a
    viewer asking again with If-None-Match gets 304 until a newer one is analysed."""
    camera = _cameras(request).get(device_id)
    if camera is None:
        raise HTTPException(404, f"no camera {device_id!r} is analysed on this box")
    view: LiveView | None = camera.live
    if view is None:
        raise HTTPException(503, f"camera {device_id!r} has analysed no frame yet")
    etag = _etag(view)
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",
        "X-Frame-Index": str(view.index),
        "X-Frame-Ts": view.ts.isoformat(),
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(live_jpeg(camera, view), media_type="image/jpeg", headers=headers)
