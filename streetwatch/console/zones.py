"""The zones page of the console and its JSON API: the zone editor.

A camera's zones are drawn on its latest analysed frame; GPS devices' and drones' geofences on
a plot of their coordinates. A save is validated by the code `streetwatch check` runs (the new
file loaded by `load_config`, the files it names checked by `preflight_problems`, the running
rules checked against it by `load_rules`), written back to devices.yaml keeping every other
byte (`yamledit`), and applied to the running pipeline without a restart.

Saves are serialised by a lock and carry the version (SHA-256) of the file their editor loaded:
a save against an older version is refused with 409, so two operators never overwrite each
other, nor an edit made to the file by hand in between.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated, Any

import cv2
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ingest.config import Device, DeviceKind, SiteConfig, Zone, ZoneKind, load_config
from ingest.yamlsource import ConfigError, parse_yaml, read_config_bytes
from streetwatch.console.context import ConsoleContext
from streetwatch.console.security import Principal, principal, require
from streetwatch.console.templating import page
from streetwatch.console.yamledit import EditError, commit, replace_zones, stage, version_of
from streetwatch.users import Role

log = logging.getLogger("streetwatch.console.zones")
router = APIRouter()

MAX_ZONES = 200
MAX_POINTS = 1000
GEO_KINDS = (DeviceKind.GPS, DeviceKind.DRONE)
"""Devices whose zones are WGS-84 [lon, lat] geofences."""
_save_lock = threading.Lock()
"""One save at a time, whichever page or device: each rewrites the whole devices.yaml."""

Number = Annotated[float, Field(allow_inf_nan=False)]


class ZoneBody(BaseModel):
    """A zone as the editor sends and receives it; checked by the config loader on save (so
    a problem names devices.yaml's line), not here."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(max_length=200)
    kind: str = Field(max_length=64)
    polygon: list[tuple[Number, Number]] = Field(max_length=MAX_POINTS)
    merchant: str | None = Field(None, max_length=200)


class ZonesSave(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zones: list[ZoneBody] = Field(max_length=MAX_ZONES)
    version: str | None = Field(
        None, max_length=128, description="The `version` the editor loaded (or send If-Match)."
    )


class Refused(BaseModel):
    """A save refused: `problems` as `streetwatch check` prints them (file:line: field: why);
    a malformed request gets FastAPI's list of field errors in `detail` instead."""

    detail: str | list[dict[str, Any]]
    problems: list[str] = []


class Detail(BaseModel):
    detail: str


SAVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Detail, "description": "no such device of that kind"},
    409: {"model": Detail, "description": "devices.yaml changed since the editor loaded it"},
    422: {"model": Refused, "description": "the result would not pass `streetwatch check`"},
    428: {"model": Detail, "description": "no version sent (If-Match or `version`)"},
}


class FrameSize(BaseModel):
    width: int
    height: int


class CameraZones(BaseModel):
    device_id: str
    name: str
    version: str
    """SHA-256 of devices.yaml as read: send it back with a save."""
    zones: list[ZoneBody]
    frame: FrameSize | None
    """The latest analysed frame's size; null before the first frame (or no running camera)."""
    live_zones: list[str] | None
    """Ids of the zones the running camera uses now; null when it does not run here."""


class GeoDevice(BaseModel):
    device_id: str
    kind: str
    name: str
    zones: list[ZoneBody]


class GeoPoint(BaseModel):
    device_id: str
    name: str
    what: str
    """`bay` (a geomagnetic sensor), `camera`, ..."""
    label: str
    lon: float
    lat: float


class GeoShape(BaseModel):
    label: str
    what: str
    """`shopfront` (a merchant's frontage) or `route` (a truck's approved route)."""
    points: list[tuple[float, float]]


class GeoZones(BaseModel):
    version: str
    tiles: str | None
    """The site's optional map tile URL template (console.map_tiles)."""
    devices: list[GeoDevice]
    points: list[GeoPoint]
    """Bays and devices with a fixed location, for reference (not edited here)."""
    shapes: list[GeoShape]


class Saved(BaseModel):
    device_id: str
    version: str
    zones: list[ZoneBody]
    applied: bool
    """Whether a running detector took the zones (else they apply at the next start)."""


# ---- pages -----------------------------------------------------------------------------------


@router.get("/zones", include_in_schema=False)
def zones_page(request: Request, who: Annotated[Principal, Depends(principal)]) -> HTMLResponse:
    ctx: ConsoleContext = request.app.state.ctx
    config = ctx.config
    cameras = [d for d in config.devices if d.kind is DeviceKind.CAMERA]
    data = {
        "cameras": [{"id": d.id, "name": d.name} for d in cameras],
        "kinds": [k.value for k in ZoneKind],
        "merchants": [{"id": m.id, "name": m.name} for m in config.merchants],
        "can_edit": who.allows(Role.OPERATOR) and ctx.config_path is not None,
        "tiles": config.console.map_tiles,
    }
    return page(request, "zones.html", "zones", data=data)


# ---- cameras ---------------------------------------------------------------------------------


@router.get("/api/v1/cameras/{device_id}/zones", tags=["zones"], response_model=CameraZones)
def camera_zones(
    device_id: str, request: Request, _: Annotated[Principal, Depends(principal)]
) -> JSONResponse:
    """A camera's zones as devices.yaml has them (pixel polygons), the file's version and the
    latest frame's size."""
    ctx: ConsoleContext = request.app.state.ctx
    device = _device(ctx, device_id, (DeviceKind.CAMERA,))
    raw, config = _read(ctx)
    found = config.device(device_id) if config is not None else None
    camera = _camera(ctx, device_id)
    live = camera.live if camera is not None else None
    frame = None
    if live is not None:
        height, width = live.image.shape[:2]
        frame = FrameSize(width=width, height=height)
    body = CameraZones(
        device_id=device_id,
        name=device.name,
        version=version_of(raw),
        zones=_bodies((found or device).zones),
        frame=frame,
        live_zones=None if camera is None else [z.id for z in camera.device.zones],
    )
    return _json(body, version_of(raw))


@router.get(
    "/api/v1/cameras/{device_id}/frame.jpg",
    tags=["zones"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 503: {"description": "no frame yet"}},
)
def camera_frame(
    device_id: str, request: Request, _: Annotated[Principal, Depends(principal)]
) -> Response:
    """The camera's latest analysed frame as it came from the stream (no overlay), to draw
    zones on. 503 until the camera has analysed its first frame."""
    ctx: ConsoleContext = request.app.state.ctx
    _device(ctx, device_id, (DeviceKind.CAMERA,))
    camera = _camera(ctx, device_id)
    live = camera.live if camera is not None else None
    if live is None:
        why = "no frame analysed yet" if camera is not None else "this camera does not run here"
        raise HTTPException(503, f"{device_id}: {why}", headers={"Retry-After": "2"})
    ok, jpeg = cv2.imencode(".jpg", live.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise HTTPException(500, f"{device_id}: the frame could not be encoded")
    headers = {"Cache-Control": "no-store", "X-Frame-Ts": live.ts.isoformat()}
    return Response(jpeg.tobytes(), media_type="image/jpeg", headers=headers)


@router.put(
    "/api/v1/cameras/{device_id}/zones",
    tags=["zones"],
    response_model=Saved,
    responses=SAVE_RESPONSES,
)
def save_camera_zones(
    device_id: str,
    body: ZonesSave,
    request: Request,
    who: Annotated[Principal, Depends(require(Role.OPERATOR))],
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Replace a camera's zones (the whole list). 422 with `problems` (file:line: field: why)
    when `streetwatch check` would refuse the result; 409 when devices.yaml changed since the
    editor loaded it."""
    ctx: ConsoleContext = request.app.state.ctx
    _device(ctx, device_id, (DeviceKind.CAMERA,))
    return _save(ctx, who, device_id, body, if_match)


# ---- geographic zones --------------------------------------------------------------------------


@router.get("/api/v1/geozones", tags=["zones"], response_model=GeoZones)
def geozones(request: Request, _: Annotated[Principal, Depends(principal)]) -> JSONResponse:
    """GPS devices' and drones' geofences ([lon, lat]), with the site's bays, merchants'
    frontages and approved routes to draw them against."""
    ctx: ConsoleContext = request.app.state.ctx
    raw, config = _read(ctx)
    site = config or ctx.config
    devices = [
        GeoDevice(device_id=d.id, kind=d.kind.value, name=d.name, zones=_bodies(d.zones))
        for d in site.devices
        if d.kind in GEO_KINDS
    ]
    points = [
        GeoPoint(
            device_id=d.id,
            name=d.name,
            what="bay" if d.kind is DeviceKind.GEOMAGNETIC else d.kind.value,
            label=d.bay or d.id,
            lon=d.location.lon,
            lat=d.location.lat,
        )
        for d in site.devices
        if d.location is not None
    ]
    shapes = [
        GeoShape(label=m.id, what="shopfront", points=list(m.shopfront)) for m in site.merchants
    ]
    shapes += [
        GeoShape(label=f"{d.id} route", what="route", points=list(d.route.line))
        for d in site.devices
        if d.route is not None
    ]
    body = GeoZones(
        version=version_of(raw),
        tiles=ctx.config.console.map_tiles,
        devices=devices,
        points=points,
        shapes=shapes,
    )
    return _json(body, version_of(raw))


@router.put(
    "/api/v1/geozones/{device_id}", tags=["zones"], response_model=Saved, responses=SAVE_RESPONSES
)
def save_geozones(
    device_id: str,
    body: ZonesSave,
    request: Request,
    who: Annotated[Principal, Depends(require(Role.OPERATOR))],
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Replace a GPS device's or drone's geofences ([lon, lat] polygons), as for cameras."""
    ctx: ConsoleContext = request.app.state.ctx
    _device(ctx, device_id, GEO_KINDS)
    return _save(ctx, who, device_id, body, if_match)


# ---- the save --------------------------------------------------------------------------------


def _save(
    ctx: ConsoleContext, who: Principal, device_id: str, body: ZonesSave, if_match: str | None
) -> JSONResponse:
    path = _config_path(ctx)
    base = _base_version(body, if_match)
    zones = [z.model_dump(exclude_none=True) for z in body.zones]
    with _save_lock:
        raw = _raw(path)
        if version_of(raw) != base:
            raise HTTPException(
                409,
                f"{path.name} changed since this editor loaded it (another save, or an edit by "
                "hand): reload to see the changes, then make yours again",
            )
        try:
            text = replace_zones(raw.decode("utf-8"), device_id, zones)
        except (EditError, UnicodeDecodeError) as exc:
            raise HTTPException(409, f"{path.name} cannot be edited here: {exc}") from None
        tmp = stage(path, text)
        try:
            problems, config = _check(ctx, tmp, path)
            if config is None or problems:
                return JSONResponse(
                    {
                        "detail": f"not saved: {len(problems)} problem(s) in the result",
                        "problems": problems,
                    },
                    status_code=422,
                )
            commit(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        after = config.device(device_id)
        assert after is not None
        applied = _apply(ctx, device_id, list(after.zones))
        ctx.audit(
            who.name,
            "zones.save",
            f"zones/{device_id}",
            _file_zones(raw, device_id),
            [z.model_dump(mode="json", exclude_none=True) for z in after.zones],
        )
        version = version_of(text.encode("utf-8"))
    log.info("%s saved %d zone(s) of %s to %s", who.name, len(after.zones), device_id, path)
    saved = Saved(device_id=device_id, version=version, zones=_bodies(after.zones), applied=applied)
    return _json(saved, version)


def _check(ctx: ConsoleContext, tmp: Path, path: Path) -> tuple[list[str], SiteConfig | None]:
    """What `streetwatch check -c <path> -r <rules>` says of the staged file, with the real
    file's name in each problem."""
    from rules.schema import load_rules
    from streetwatch.preflight import preflight_problems

    def named(problems: list[str]) -> list[str]:
        return [p.replace(str(tmp), str(path)) for p in problems]

    try:
        config = load_config(tmp)
    except ConfigError as exc:
        return named(exc.problems), None
    problems = named(preflight_problems(config, tmp))
    if ctx.rules_dir is not None:
        try:
            load_rules(ctx.rules_dir, config)
        except ConfigError as exc:
            problems += named(exc.problems)
    return problems, config


def _apply(ctx: ConsoleContext, device_id: str, zones: list[Zone]) -> bool:
    """The saved zones into the running site: the console's config, the pipeline's (rules
    engine, sensors), and the camera, which takes them before its next frame."""
    config = _with_zones(ctx.config, device_id, zones)
    ctx.config = config
    pipeline = ctx.pipeline
    if pipeline is None:
        return False
    edited = getattr(pipeline, "zones_edited", None)
    if edited is not None:
        edited(_with_zones(pipeline.config, device_id, zones), device_id)
    camera = _camera(ctx, device_id)
    if camera is not None:
        camera.set_zones(zones)
        return True
    return edited is not None


def _with_zones(config: SiteConfig, device_id: str, zones: list[Zone]) -> SiteConfig:
    devices = [
        d.model_copy(update={"zones": zones}) if d.id == device_id else d for d in config.devices
    ]
    updated = config.model_copy(update={"devices": devices})
    return updated


# ---- helpers ---------------------------------------------------------------------------------


def _device(ctx: ConsoleContext, device_id: str, kinds: tuple[DeviceKind, ...]) -> Device:
    device = ctx.config.device(device_id)
    if device is None or device.kind not in kinds:
        what = " or ".join(k.value for k in kinds)
        raise HTTPException(404, f"no {what} device {device_id!r} on this site")
    return device


def _camera(ctx: ConsoleContext, device_id: str) -> Any:
    cameras = getattr(ctx.pipeline, "cameras", None) or {}
    return cameras.get(device_id)


def _config_path(ctx: ConsoleContext) -> Path:
    if ctx.config_path is None:
        raise HTTPException(409, "this console was started without a devices.yaml to edit")
    return Path(ctx.config_path).resolve()  # a symlinked file is edited where it lives


def _raw(path: Path) -> bytes:
    try:
        return read_config_bytes(path)
    except ConfigError as exc:
        raise HTTPException(409, "; ".join(exc.problems)) from None


def _read(ctx: ConsoleContext) -> tuple[bytes, SiteConfig | None]:
    """devices.yaml's bytes and, when it loads, its zones as the file has them now (it may
    have been edited since the box started); None when it does not load."""
    if ctx.config_path is None:
        return b"", None
    path = _config_path(ctx)
    raw = _raw(path)
    try:
        return raw, load_config(path)
    except ConfigError as exc:
        log.warning("zones: %s does not load, showing the running zones: %s", path, exc)
        return raw, None


def _file_zones(raw: bytes, device_id: str) -> Any:
    """The device's zones as the file had them (for the audit's `before`)."""
    try:
        data = parse_yaml(raw, "devices.yaml").data
    except ConfigError:
        return None
    devices = data.get("devices") if isinstance(data, dict) else None
    for device in devices if isinstance(devices, list) else []:
        if isinstance(device, dict) and device.get("id") == device_id:
            return device.get("zones")
    return None


def _base_version(body: ZonesSave, if_match: str | None) -> str:
    if if_match:
        return if_match.strip().removeprefix("W/").strip('"')
    if body.version:
        return body.version
    raise HTTPException(
        428, "send the version the editor loaded (If-Match, or `version` in the body)"
    )


def _bodies(zones: list[Zone]) -> list[ZoneBody]:
    return [
        ZoneBody(id=z.id, kind=z.kind.value, polygon=list(z.polygon), merchant=z.merchant)
        for z in zones
    ]


def _json(body: BaseModel, version: str) -> JSONResponse:
    headers = {"ETag": f'"{version}"', "Cache-Control": "no-store"}
    return JSONResponse(body.model_dump(mode="json"), headers=headers)
