"""Violation → evidence package: clip, snapshots, sensor series, GPS track, place, party, rule.

A vehicle case's party is its plate, read once here on the best frame (`evidence.plates`).

`EvidenceBuilder.build(violation)` returns the committed package folder. It is idempotent by
violation id (the case id is derived from it), and atomic: see `evidence.ledger`. Call it once
the post-roll has passed (`ready_at(violation)`); the builder takes what the camera ring buffer
holds at that moment.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import orjson

from detectors.plates import PlateReader
from evidence.blur import FaceDetector, blur_bystanders, detector_for
from evidence.clips import still_times, stills, write_copy_clip
from evidence.coverage_plot import coverage_evidence
from evidence.fsutil import fsync_file, sha256_file, write_file
from evidence.keys import Signer
from evidence.ledger import Committed, Ledger
from evidence.media import Overlay, annotate, decode, encode_jpeg, write_clip
from evidence.metric_plot import metric_files
from evidence.package import FORMAT, both_times, case_id_of, package_dir
from evidence.plates import PlateFinding, PlateStage, encode_png, vehicle_party
from evidence.series import read_history
from ingest import failpoints
from ingest.config import Device, DeviceKind, SiteConfig
from ingest.coords import wgs84_to_bd09, wgs84_to_gcj02
from ingest.frames import EncodedFrame
from ingest.journal import Journal
from ingest.video.packetring import PacketClip
from rules.violation import Violation

log = logging.getLogger(__name__)


class FrameProvider(Protocol):
    """The camera pipeline's ring buffer (JPEG frames), looked up by device and time."""

    def frames_between(self, device_id: str, t0: datetime, t1: datetime) -> list[EncodedFrame]: ...

    # Optional: `clip_between(device_id, t0, t1) -> PacketClip | None`, the camera's own
    # H.264/H.265 packets (cut by stream copy; stills decoded from them at the moments needed).


@dataclass(frozen=True, slots=True)
class BuildResult:
    case_id: str
    path: Path
    seq: int
    manifest_sha256: str
    created: bool


class EvidenceBuilder:
    def __init__(
        self,
        config: SiteConfig,
        signer: Signer,
        frames: FrameProvider | None,
        journal: Journal | None,
        *,
        root: Path | None = None,
        face_detector: FaceDetector | None = None,
        plate_reader: PlateReader | None = None,
        crash_hook: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.signer = signer
        self.frames = frames
        self.journal = journal
        self.root = Path(root or config.storage.evidence or "var/evidence")
        self.ledger = Ledger(self.root)
        self.tz = config.site.tz
        settings = config.evidence
        self.face_detector = face_detector
        if self.face_detector is None and settings.blur.enabled:
            self.face_detector = detector_for(settings.blur)
        self.plates = PlateStage(settings.plates, plate_reader)
        self._crash_hook = crash_hook or (lambda point: failpoints.reach(f"evidence.{point}"))
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self.last: BuildResult | None = None

    @staticmethod
    def ready_at(violation: Violation) -> datetime:
        """When the post-roll has been recorded and the package can be built."""
        return violation.window_end + timedelta(seconds=violation.evidence.post_s)

    def case_id(self, violation: Violation) -> str:
        return case_id_of(violation.violation_id, violation.opened_at)

    def path_of(self, violation: Violation) -> Path:
        return package_dir(self.ledger.root, self.case_id(violation), violation.opened_at)

    def build(self, violation: Violation) -> Path:
        return self.build_result(violation).path

    def build_result(self, violation: Violation) -> BuildResult:
        case_id = self.case_id(violation)
        final = self.path_of(violation)
        if (final / "manifest.json").is_file():
            self._count("already_built")
            return BuildResult(case_id, final, -1, "", created=False)
        staging = self.ledger.new_staging(case_id)
        try:
            files, facts = self._collect(violation, staging)
            self._crash_hook("collected")
            committed: Committed = self.ledger.commit(
                staging,
                final,
                lambda seq, prev: self._manifest(violation, case_id, seq, prev, files, facts),
                self.signer,
                crash_hook=self._crash_hook,
            )
        except BaseException:
            self.ledger.discard(staging)
            raise
        self._count("packages_built" if committed.created else "already_built")
        result = BuildResult(
            case_id, committed.path, committed.seq, committed.manifest_sha256, committed.created
        )
        self.last = result
        return result

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[name] += n

    # -- collecting -------------------------------------------------------------------------

    def _collect(self, v: Violation, staging: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        files: list[dict[str, Any]] = []
        facts: dict[str, Any] = {"cameras": {}, "problems": [], "plates": []}

        def put(rel: str, data: bytes, role: str) -> None:
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file(path, data)
            files.append(
                {
                    "path": rel,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "role": role,
                }
            )

        put("data/violation.json", _json(v.to_dict()), "violation")
        devices = [self.config.device(d) for d in v.devices]
        cameras = [d for d in devices if d is not None and d.kind in _CAMERA_KINDS]
        spec = v.evidence
        t0 = v.window_start - timedelta(seconds=spec.pre_s)
        t1 = v.window_end + timedelta(seconds=spec.post_s)
        # Camera media (decoding, muxing, JPEG: native code, the GIL let go) on a thread of its
        # own while the sensor history is read and drawn here.
        media = _Background(self._cameras_media, v, cameras, t0, t1, staging, put, files, facts)
        try:
            sensor_ids = [d.id for d in devices if d is not None and d.kind not in _CAMERA_KINDS]
            if sensor_ids and self.journal is not None:
                since = v.window_start - timedelta(seconds=spec.sensor_series_s)
                history = read_history(self.journal, sensor_ids, since, t1, v.observations, self.tz)
                for rel, data, role in history.files():
                    put(rel, data, role)
                if history.metric_devices:
                    readings = self.journal.readings_between(history.metric_devices, since, t1)
                    for rel, data, role in metric_files(
                        readings, v.observations, self.tz, v.window_end
                    ):
                        put(rel, data, role)
                facts["sensor_readings"] = history.readings
            coverage = coverage_evidence(v, self.config, self.journal)
            if coverage is not None:
                put("media/coverage/coverage.png", coverage.png, "coverage_plot")
                put("data/coverage.json", _json(coverage.figures), "coverage")
        finally:
            media.result()
        return files, facts

    def camera_frames(
        self, camera_id: str, t0: datetime, t1: datetime, moments: Sequence[datetime]
    ) -> list[EncodedFrame]:
        """JPEG frames of a camera between t0 and t1: the ring's, or for a camera that records
        its own packets, stills decoded at `moments` (empty when nothing was recorded)."""
        if self.frames is None:
            return []
        packets = getattr(self.frames, "clip_between", None)
        clip: PacketClip | None = packets(camera_id, t0, t1) if packets else None
        if clip is not None:
            return stills(clip, moments)
        return sorted(self.frames.frames_between(camera_id, t0, t1), key=lambda f: f.ts)

    def _cameras_media(
        self,
        v: Violation,
        cameras: list[Device],
        t0: datetime,
        t1: datetime,
        staging: Path,
        put: Callable[[str, bytes, str], None],
        files: list[dict[str, Any]],
        facts: dict[str, Any],
    ) -> None:
        for camera in cameras:
            if self.frames is None:
                facts["problems"].append(f"{camera.id}: no frame provider")
                continue
            packets = getattr(self.frames, "clip_between", None)
            clip: PacketClip | None = packets(camera.id, t0, t1) if packets else None
            if clip is not None:
                plates = self.plates.active and self.plates.applies(v)
                frames = stills(clip, still_times(v, camera.id, plates))
            else:
                frames = sorted(self.frames.frames_between(camera.id, t0, t1), key=lambda f: f.ts)
            if not frames:
                facts["problems"].append(f"{camera.id}: no frames in the ring buffer")
                self._count("packages_without_frames")
                continue
            facts["cameras"][camera.id] = self._camera_media(
                v, camera, frames, staging, put, files, clip
            )
            if self.plates.active and self.plates.applies(v):
                finding = self._camera_plate(v, camera, frames, put)
                facts["cameras"][camera.id]["plate"] = finding.info(self.tz)
                facts["plates"].append(finding)

    def _camera_media(
        self,
        v: Violation,
        camera: Device,
        frames: list[EncodedFrame],
        staging: Path,
        put: Callable[[str, bytes, str], None],
        files: list[dict[str, Any]],
        clip: PacketClip | None = None,
    ) -> dict[str, Any]:
        base = f"media/{camera.id}"
        info: dict[str, Any] = {"frames": len(frames) if clip is None else len(clip.packets)}
        if v.evidence.clip:
            rel = f"{base}/clip.mp4"
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if clip is not None:
                info["clip"] = write_copy_clip(clip, path)
                first, last = clip.start, clip.end
            else:
                info["clip"] = write_clip(
                    frames,
                    path,
                    crf=self.config.evidence.clip_crf,
                    preset=self.config.evidence.clip_preset,
                )
                first, last = frames[0].ts, frames[-1].ts
            fsync_file(path)
            sha, size = sha256_file(path)
            files.append({"path": rel, "sha256": sha, "size": size, "role": "clip"})
            info["clip"]["first_frame"] = both_times(first, self.tz)
            info["clip"]["last_frame"] = both_times(last, self.tz)
        if v.evidence.snapshots:
            info["snapshots"] = {}
            zone = next((z for z in camera.zones if z.id == v.zone_id), None)
            obs = [o for o in v.observations if o.frame and o.frame.device_id == camera.id]
            moments = _moments(v, obs)
            for name, ts in moments.items():
                found = _nearest_decodable(frames, ts)
                if found is None:
                    continue
                frame, image = found
                boxes = []
                near = _nearest_box(obs, frame.ts)
                if near is not None:
                    boxes.append((near, f"{v.subject} #{v.subject_id}"))
                overlay = Overlay(
                    device_id=camera.id,
                    ts=frame.ts,
                    tz=self.tz,
                    boxes=boxes,
                    zone=zone.polygon if zone else None,
                    zone_label=f"{zone.id} ({zone.kind.value})" if zone else "",
                    caption=f"{v.rule_id}: {name.replace('_', ' ')}",
                )
                annotated = image
                if self.face_detector is not None:
                    annotated, n = blur_bystanders(image, self.face_detector, [b for b, _ in boxes])
                    self._count("faces_blurred", n)
                annotated = annotate(annotated, overlay)
                put(f"{base}/{name}.raw.jpg", frame.jpeg, f"snapshot_raw:{name}")
                put(f"{base}/{name}.annotated.jpg", encode_jpeg(annotated), f"snapshot:{name}")
                info["snapshots"][name] = {
                    "frame_index": frame.index,
                    "at": both_times(frame.ts, self.tz),
                    "box": list(near) if near is not None else None,
                    "faces_blurred": self.face_detector is not None,
                }
        return info

    def _camera_plate(
        self,
        v: Violation,
        camera: Device,
        frames: list[EncodedFrame],
        put: Callable[[str, bytes, str], None],
    ) -> PlateFinding:
        obs = [o for o in v.observations if o.frame and o.frame.device_id == camera.id]
        finding = self.plates.find(v, frames, obs, _nearest_decodable)
        if finding.reading is None or finding.raw_crop is None:
            self._count("plates_unread")
            return finding
        base = f"media/{camera.id}"
        put(f"{base}/plate.raw.png", encode_png(finding.raw_crop), "snapshot_raw:plate")
        put(f"{base}/plate.rectified.png", encode_png(finding.reading.crop), "snapshot:plate")
        self._count("plates_read")
        return finding

    # -- manifest ---------------------------------------------------------------------------

    def _manifest(
        self,
        v: Violation,
        case_id: str,
        seq: int,
        prev: str,
        files: list[dict[str, Any]],
        facts: dict[str, Any],
    ) -> dict[str, Any]:
        tz = self.tz
        site = self.config.site
        devices = []
        for device_id in v.devices:
            d = self.config.device(device_id)
            devices.append(
                {"id": device_id, "known": False}
                if d is None
                else {"id": d.id, "kind": d.kind.value, "name": d.name, "crs": d.crs.value}
            )
        return {
            "format": FORMAT,
            "case_id": case_id,
            "violation_id": v.violation_id,
            "seq": seq,
            "prev_manifest_sha256": prev,
            "created_at": both_times(datetime.now(UTC), tz),
            "site": {"id": site.id, "name": site.name, "timezone": site.timezone},
            "rule": {
                "id": v.rule_id,
                "name": v.rule_name,
                "category": v.category,
                "severity": v.severity,
                "thresholds": _plain(dict(v.thresholds)),
                "dispose_within_s": None
                if v.dispose_within is None
                else v.dispose_within.total_seconds(),
            },
            "category": v.category,
            "situation": v.situation,
            "subject": {"kind": v.subject, "id": v.subject_id},
            "zone": {"id": v.zone_id, "kind": v.zone_kind},
            "devices": devices,
            "location": self._location(v),
            "party": self._party(v, facts),
            "time_window": {
                "start": both_times(v.window_start, tz),
                "end": both_times(v.window_end, tz),
                "opened_at": both_times(v.opened_at, tz),
                "deadline": None if v.deadline is None else both_times(v.deadline, tz),
                "pre_s": v.evidence.pre_s,
                "post_s": v.evidence.post_s,
            },
            "media": facts["cameras"],
            "problems": facts["problems"],
            "files": sorted(files, key=lambda f: f["path"]),
            "signer": {
                "algorithm": "Ed25519",
                "key_id": self.signer.key_id,
                "public_key": self.signer.verifier.public_b64,
            },
        }

    def _party(self, v: Violation, facts: dict[str, Any]) -> dict[str, Any] | None:
        """A vehicle case's plate, a shop-front case's merchant, or None."""
        if self.plates.applies(v):
            return vehicle_party(facts["plates"])
        if v.party is None:
            return None
        merchant = self.config.merchant(v.party)
        if merchant is None:
            return {"id": v.party, "known": False}
        return {"known": True, **merchant.model_dump(mode="json")}

    def _location(self, v: Violation) -> dict[str, Any] | None:
        point = v.location
        source = "violation"
        device = next((self.config.device(d) for d in v.devices if self.config.device(d)), None)
        if point is None and device is not None and device.location is not None:
            lon, lat, source = device.location.lon, device.location.lat, f"device {device.id}"
        elif point is not None:
            lon, lat = point.lon, point.lat
        else:
            return None
        out: dict[str, Any] = {"wgs84": {"lon": lon, "lat": lat}, "source": source}
        crs = device.crs.value if device is not None else "wgs84"
        convert = {"gcj02": wgs84_to_gcj02, "bd09": wgs84_to_bd09}.get(crs)
        dlat, dlon = convert(lat, lon) if convert else (lat, lon)
        out["device_crs"] = {"crs": crs, "lon": dlon, "lat": dlat}
        placed = next(
            (o.attributes for o in reversed(v.observations) if "ground" in o.attributes), None
        )
        if point is not None and placed is not None:
            # a drone placed the subject: how sure, and where the drone itself was
            out["source"] = placed["ground"].get("method", "ground projection")
            out["uncertainty_m"] = placed["ground"].get("uncertainty_m")
            out["ground"] = placed["ground"]
            out["observer"] = placed.get("drone")
        return out


_CAMERA_KINDS = (DeviceKind.CAMERA, DeviceKind.DRONE)


class _Background:
    """`fn(*args)` on a thread of its own; `result()` waits for it and raises what it raised."""

    def __init__(self, fn: Callable[..., None], *args: Any) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., None], args: tuple) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _json(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def _plain(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))


def _moments(v: Violation, obs: Sequence[Any]) -> dict[str, datetime]:
    first = min((o.first_seen for o in obs), default=v.window_start)
    latest = max((o.last_seen for o in obs), default=v.window_end)
    return {"first_seen": first, "confirmed": v.opened_at, "latest": latest}


def _nearest_decodable(
    frames: Sequence[EncodedFrame], ts: datetime, tries: int = 5
) -> tuple[EncodedFrame, Any] | None:
    """The frame closest to `ts` that decodes (a corrupt JPEG is passed over, not fatal)."""
    for frame in sorted(frames, key=lambda f: abs((f.ts - ts).total_seconds()))[:tries]:
        try:
            return frame, decode(frame)
        except ValueError:
            continue
    return None


def _nearest_box(obs: Sequence[Any], ts: datetime) -> tuple[float, float, float, float] | None:
    if not obs:
        return None
    best = min(obs, key=lambda o: abs((o.frame.frame_ts - ts).total_seconds()))
    return tuple(float(c) for c in best.frame.box)  # type: ignore[return-value]
