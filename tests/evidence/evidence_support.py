"""Helpers shared by the evidence tests (and their subprocess children)."""

from __future__ import annotations

import bisect
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import yaml

from detectors.observation import FrameRef, GeoPoint, Observation, ObservationKind
from ingest.config import SiteConfig, load_config
from ingest.frames import EncodedFrame
from ingest.journal import Journal
from ingest.readings import GeomagField, GeomagState, GpsFix, Reading, Stream, TimeFlag
from rules.violation import EvidenceSpec, Violation

REPO = Path(__file__).resolve().parents[2]
FOOTAGE = REPO / "var/footage/vtest.avi"


def ensure_vtest() -> Path:
    """vtest.avi from Debian's opencv-doc (as the Makefile's `footage` target does), cached."""
    if FOOTAGE.exists():
        return FOOTAGE
    FOOTAGE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            subprocess.run(["apt-get", "download", "opencv-doc"], cwd=work, check=True)
            deb = next(work.glob("opencv-doc_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
        except (OSError, subprocess.CalledProcessError, StopIteration) as exc:
            raise RuntimeError(f"vtest.avi missing; fetching opencv-doc failed: {exc}") from exc
        part = FOOTAGE.with_suffix(".part")
        shutil.copyfile(work / "x/usr/share/doc/opencv-doc/examples/data/vtest.avi", part)
        part.replace(FOOTAGE)
    return FOOTAGE


@dataclass
class VideoRing:
    """A camera ring buffer of real JPEG frames (what the camera pipeline keeps for pre-roll)."""

    device_id: str
    frames: list[EncodedFrame] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: Path, device_id: str, start: datetime, seconds: float) -> VideoRing:
        capture = cv2.VideoCapture(str(path))
        fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
        ring = cls(device_id)
        index = 0
        while index < seconds * fps:
            ok, image = capture.read()
            if not ok:
                break
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            assert ok
            ring.frames.append(
                EncodedFrame(
                    device_id,
                    index,
                    start + timedelta(seconds=index / fps),
                    image.shape[1],
                    image.shape[0],
                    jpeg.tobytes(),
                )
            )
            index += 1
        capture.release()
        return ring

    def frames_between(self, device_id: str, t0: datetime, t1: datetime) -> list[EncodedFrame]:
        if device_id != self.device_id:
            return []
        times = [f.ts for f in self.frames]
        return self.frames[bisect.bisect_left(times, t0) : bisect.bisect_right(times, t1)]


def site_dict(tmp_path: Path, **evidence: Any) -> dict[str, Any]:
    return {
        "site": {"id": "test-site", "name": "Test street", "timezone": "Asia/Shanghai"},
        "storage": {"root": str(tmp_path / "var")},
        "merchants": [
            {
                "id": "m-0001",
                "name": "Wang's Fruit",
                "licence_no": "91310000MA1K000001",
                "address": "1 Market St",
                "contact": "021-5555-0001",
                "shopfront": [[121.4372, 31.1951], [121.4374, 31.1951], [121.4374, 31.1953]],
            }
        ],
        "devices": [
            {
                "id": "cam-1",
                "kind": "camera",
                "location": {"lat": 31.1952, "lon": 121.4373},
                "zones": [
                    {
                        "id": "shopfront-wang",
                        "kind": "shopfront",
                        "merchant": "m-0001",
                        "polygon": [[0.0, 300.0], [250.0, 300.0], [250.0, 576.0], [0.0, 576.0]],
                    }
                ],
            },
            {"id": "mag-1", "kind": "geomagnetic", "bay": "FL-1", "bay_kind": "fire_lane"},
            {"id": "truck-1", "kind": "gps", "crs": "gcj02"},
        ],
        "evidence": evidence,
    }


def site_config(tmp_path: Path, **evidence: Any) -> SiteConfig:
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(site_dict(tmp_path, **evidence), sort_keys=False))
    return load_config(path)


def make_violation(
    start: datetime,
    n: int = 0,
    *,
    devices: tuple[str, ...] = ("cam-1",),
    dwell_s: float = 8.0,
    pre_s: float = 3.0,
    post_s: float = 2.0,
) -> Violation:
    """A cross-door trading violation seen by cam-1 (track 7 in the shop-front zone)."""
    first = start + timedelta(seconds=5 + n)
    last = first + timedelta(seconds=dwell_s)
    observations = tuple(
        Observation(
            kind=ObservationKind.PRESENCE,
            device_id="cam-1",
            subject="person",
            subject_id=str(7 + n),
            first_seen=first,
            last_seen=first + timedelta(seconds=s),
            zone_id="shopfront-wang",
            zone_kind="shopfront",
            location=GeoPoint(121.4373, 31.1952),
            frame=FrameRef(
                "cam-1",
                int((5 + n + s) * 10),
                first + timedelta(seconds=s),
                (100.0 + 10 * s, 320.0, 180.0 + 10 * s, 560.0),
                0.9,
            ),
        )
        for s in (0.0, dwell_s / 2, dwell_s)
    )
    return Violation(
        rule_id="cross-door-trading",
        rule_name="Cross-door trading",
        category="市容管理/跨门经营",
        severity="normal",
        site_id="test-site",
        situation=f"cross-door-trading/cam-1/{7 + n}/shopfront-wang",
        opened_at=first + timedelta(seconds=dwell_s / 2),
        window_start=first,
        window_end=last,
        devices=devices,
        subject="person",
        subject_id=str(7 + n),
        zone_id="shopfront-wang",
        zone_kind="shopfront",
        party="m-0001",
        location=GeoPoint(121.4373, 31.1952),
        dispose_within=timedelta(minutes=15),
        evidence=EvidenceSpec(pre_s=pre_s, post_s=post_s, sensor_series_s=60.0),
        thresholds={"min_dwell_s": dwell_s / 2, "zone_kinds": ["shopfront"]},
        observations=observations,
    )


def fill_journal(journal: Journal, start: datetime, seconds: int = 60) -> int:
    """Real readings through the real journal: a geomagnetic field, occupancy and a GPS track."""
    readings = []
    for s in range(seconds):
        ts = start + timedelta(seconds=s)
        occupied = s >= 10
        payloads = [
            ("mag-1", Stream.GEOMAG, GeomagField(20.0, -5.0, 40.0 + (25.0 if occupied else 0.0))),
            ("truck-1", Stream.GPS, GpsFix(31.1950 + s * 1e-5, 121.4370 + s * 1e-5, 18.0, 45.0)),
        ]
        if s % 5 == 0:
            payloads.append(("mag-1", Stream.GEOMAG, GeomagState(occupied)))
        for i, (device, stream, payload) in enumerate(payloads):
            key = hashlib.sha256(f"{device}{s}{i}".encode()).hexdigest()[:32]
            readings.append(
                Reading(
                    key, device, stream, ts, ts + timedelta(milliseconds=50), TimeFlag.OK, payload
                )
            )
    return journal.write(readings).inserted


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
