"""Evidence packaging: violation → complete signed package on disk (and its case evidence_complete).

Footage: all of vtest.avi (768×576, 10 fps) as a camera ring buffer of JPEG frames. Each
violation asks for the rule defaults: 10 s pre-roll, a dwell window, 5 s post-roll, so a clip
of `pre + dwell + post` seconds (default 30 s, 300 frames), three snapshots raw and annotated,
and one hour of sensor history (geomagnetic field at 1 Hz, a GPS track at 1 Hz) from a real
journal. The post-roll wait is not counted: the clock starts when the frames are there.

    .venv/bin/python bench/evidence.py [--packages 30] [--dwell-s 15] [--preset ultrafast]

Packages are built one after another (as the pipeline's evidence worker does); the figure is
the median time per package, and packages/minute is the sustained rate over the whole run.
Last line: `seconds_per_package: N s`.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors.observation import FrameRef, GeoPoint, Observation, ObservationKind  # noqa: E402
from evidence.builder import EvidenceBuilder  # noqa: E402
from evidence.cases import CaseStore  # noqa: E402
from evidence.keys import Signer  # noqa: E402
from evidence.service import EvidenceService  # noqa: E402
from evidence.verify import verify_chain  # noqa: E402
from ingest.config import load_config  # noqa: E402
from ingest.frames import EncodedFrame  # noqa: E402
from ingest.journal import Journal  # noqa: E402
from ingest.readings import GeomagField, GpsFix, Reading, Stream, TimeFlag  # noqa: E402
from rules.violation import EvidenceSpec, Violation  # noqa: E402

FOOTAGE = REPO / "var" / "footage" / "vtest.avi"
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Ring:
    def __init__(self, frames: list[EncodedFrame]) -> None:
        self.frames = frames
        self.times = [f.ts for f in frames]

    def frames_between(self, device_id: str, t0: datetime, t1: datetime) -> list[EncodedFrame]:
        return self.frames[bisect.bisect_left(self.times, t0) : bisect.bisect_right(self.times, t1)]


def load_ring() -> Ring:
    capture = cv2.VideoCapture(str(FOOTAGE))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        i = len(frames)
        ts = START + timedelta(seconds=i / fps)
        frames.append(EncodedFrame("cam-1", i, ts, image.shape[1], image.shape[0], jpeg.tobytes()))
    return Ring(frames)


def site(base: Path, preset: str) -> Path:
    doc = {
        "site": {"id": "bench-site", "timezone": "Asia/Shanghai"},
        "storage": {"root": str(base / "var")},
        "merchants": [
            {
                "id": "m-1",
                "name": "Shop",
                "licence_no": "L-1",
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
                        "id": "front",
                        "kind": "shopfront",
                        "merchant": "m-1",
                        "polygon": [[0.0, 300.0], [250.0, 300.0], [250.0, 576.0], [0.0, 576.0]],
                    }
                ],
            },
            {"id": "mag-1", "kind": "geomagnetic"},
            {"id": "gps-1", "kind": "gps"},
        ],
        "evidence": {"clip_preset": preset},
    }
    path = base / "devices.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def fill_journal(journal: Journal, seconds: int) -> None:
    rows = []
    for s in range(-seconds, 120):
        ts = START + timedelta(seconds=s)
        for device, stream, payload in (
            ("mag-1", Stream.GEOMAG, GeomagField(20.0, -5.0, 40.0 + (s % 50))),
            ("gps-1", Stream.GPS, GpsFix(31.195 + s * 1e-6, 121.437 + s * 1e-6, 12.0)),
        ):
            key = hashlib.sha256(f"{device}{s}".encode()).hexdigest()[:32]
            rows.append(Reading(key, device, stream, ts, ts, TimeFlag.OK, payload))
    journal.write(rows)


def violation(n: int, dwell_s: float, span_s: float) -> Violation:
    first = START + timedelta(seconds=10 + (n * 3.1) % max(1.0, span_s - dwell_s - 15))
    last = first + timedelta(seconds=dwell_s)
    obs = tuple(
        Observation(
            ObservationKind.PRESENCE, "cam-1", "person", str(n), first,
            first + timedelta(seconds=s), "front", "shopfront",
            frame=FrameRef("cam-1", 0, first + timedelta(seconds=s),
                           (100.0, 300.0, 200.0, 560.0), 0.9),
        )
        for s in (0.0, dwell_s / 2, dwell_s)
    )  # fmt: skip
    return Violation(
        rule_id="cross-door-trading", rule_name="Cross-door trading", category="市容管理/跨门经营",
        severity="normal", site_id="bench-site", situation=f"s-{n}",
        opened_at=first + timedelta(seconds=dwell_s / 2), window_start=first, window_end=last,
        devices=("cam-1", "mag-1", "gps-1"), subject="person", subject_id=str(n),
        zone_id="front", zone_kind="shopfront", party="m-1",
        location=GeoPoint(121.4373, 31.1952), dispose_within=timedelta(minutes=15),
        evidence=EvidenceSpec(pre_s=10.0, post_s=5.0, sensor_series_s=3600.0),
        thresholds={"min_dwell_s": dwell_s / 2}, observations=obs,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", type=int, default=30)
    parser.add_argument("--dwell-s", type=float, default=15.0)
    parser.add_argument("--preset", default="ultrafast", help="x264 preset (the config default)")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    args = parser.parse_args()
    if not FOOTAGE.exists():
        sys.exit(f"{FOOTAGE} missing: run `make footage`")
    work = Path(tempfile.mkdtemp(prefix="bench-evidence-"))
    try:
        ring = load_ring()
        span = (ring.frames[-1].ts - ring.frames[0].ts).total_seconds()
        config = load_config(site(work, args.preset))
        journal = Journal(work / "journal.sqlite")
        fill_journal(journal, 3600)
        store = CaseStore(work / "cases.sqlite")
        signer = Signer.load_or_create(work / "key.pem")
        builder = EvidenceBuilder(config, signer, ring, journal)
        service = EvidenceService(builder, store)
        service.handle(violation(10_000, args.dwell_s, span))  # warm-up (codec, imports)
        times = []
        cpu0 = time.process_time()
        began = time.perf_counter()
        for n in range(args.packages):
            v = violation(n, args.dwell_s, span)
            t = time.perf_counter()
            case = service.handle(v)
            times.append(time.perf_counter() - t)
            assert case.state.value == "evidence_complete"
        wall = time.perf_counter() - began
        cpu = (time.process_time() - cpu0) / args.packages
        report = verify_chain(builder.root, signer.verifier)
        assert report.ok, report.findings
        clip_s = 10 + args.dwell_s + 5
        size = sum(f.stat().st_size for f in builder.root.rglob("*") if f.is_file())
        times.sort()
        print(f"footage: {FOOTAGE.name}, {len(ring.frames)} frames 768x576; clip {clip_s:.0f} s "
              f"({clip_s * 10:.0f} frames), preset {args.preset}")  # fmt: skip
        print(f"packages: {args.packages} (+1 warm-up), chain verified: {report.packages}")
        print(f"package size: {size / (args.packages + 1) / 1e6:.2f} MB average")
        print(f"per package: p50 {statistics.median(times):.3f} s, "
              f"p95 {times[int(0.95 * (len(times) - 1))]:.3f} s, "
              f"max {times[-1]:.3f} s")  # fmt: skip
        print(f"cpu per package: {cpu:.3f} s (all threads; the box has {os.cpu_count()} cores)")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        print(f"packages_per_minute: {args.packages / wall * 60:.1f} /min")
        print(f"seconds_per_package: {statistics.median(times):.3f} s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
