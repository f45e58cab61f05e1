"""Evidence packaging: violation → complete signed package on disk (and its case evidence_complete).

Footage: vtest.avi (768×576, 10 fps) transcoded once to H.264 (`make footage`: a camera's own
stream, GOP 2 s), kept two ways as a camera keeps it: the camera's packets (clip cut by stream
copy, stills decoded at the moments needed) and today's JPEG ring (clip x264-encoded). Each
violation asks for the rule defaults: 10 s pre-roll, a dwell window, 5 s post-roll, so a clip
of `pre + dwell + post` seconds (default 30 s, 300 frames), three snapshots raw and annotated,
and one hour of sensor history (geomagnetic field at 1 Hz, a GPS track at 1 Hz) from a real
journal. The post-roll wait is not counted: the clock starts when the frames are there.

    .venv/bin/python bench/evidence.py [--packages 30] [--dwell-s 15] [--preset ultrafast]

Packages are built one after another (as the pipeline's evidence worker does); the figure is
the median time per package, and packages/minute is the sustained rate over the whole run.
The limit: plain `ffmpeg -c copy` of the same clips from the same file (`limit_ffmpeg_copy_s`),
and the ratio to it (`ratio_to_ffmpeg_copy`); `ratio_to_x264_path` is to today's path.
Recording per camera: CPU per second of video and ring memory for the 10 s pre-roll, packets
beside JPEGs. Last line: `seconds_per_package: N s` (the stream-copy path).
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
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
from ingest.frames import Frame as Frame_  # noqa: E402
from ingest.journal import Journal  # noqa: E402
from ingest.readings import GeomagField, GpsFix, Reading, Stream, TimeFlag  # noqa: E402
from ingest.video.packetring import EncodedPacket, PacketRing, StreamHeader  # noqa: E402
from ingest.video.ring import FrameRing  # noqa: E402
from rules.violation import EvidenceSpec, Violation  # noqa: E402

FOOTAGE = REPO / "var" / "footage" / "vtest.avi"
H264 = REPO / "var" / "footage" / "vtest-h264.mp4"
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Ring:
    def __init__(self, frames: list[EncodedFrame], packets: PacketRing | None = None) -> None:
        self.frames = frames
        self.times = [f.ts for f in frames]
        self.packets = packets

    def frames_between(self, device_id: str, t0: datetime, t1: datetime) -> list[EncodedFrame]:
        return self.frames[bisect.bisect_left(self.times, t0) : bisect.bisect_right(self.times, t1)]

    def clip_between(self, device_id: str, t0: datetime, t1: datetime):
        return None if self.packets is None else self.packets.between(t0, t1)


def load_ring() -> tuple[Ring, float, int]:
    """Today's JPEG ring (frames decoded from the H.264 file, as a camera's reader does);
    returns it, the CPU seconds its JPEG encoding took per second of video, and the bytes a
    10 s `FrameRing` holds."""
    capture = cv2.VideoCapture(str(H264))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    frames = []
    ring = FrameRing(10.0, quality=80)
    most = cpu = 0.0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        i = len(frames)
        ts = START + timedelta(seconds=i / fps)
        c = time.thread_time()
        frames.append(ring.add(Frame_("cam-1", i, ts, image)))
        cpu += time.thread_time() - c
        most = max(most, ring.bytes)
    return Ring(frames), cpu / (len(frames) / fps), int(most)


def load_packets() -> tuple[PacketRing, float, int]:
    """The camera's packets as `ingest.video.avsource` records them: the ring, its CPU per
    second of video (copying each packet into the ring), and the bytes a 10 s ring holds."""
    everything = PacketRing(seconds=1e6)
    ten = PacketRing(seconds=10.0)
    most = cpu = 0.0
    with av.open(str(H264)) as container:
        stream = container.streams.video[0]
        header = None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            c = time.thread_time()
            header = header or StreamHeader.of(stream, packet)
            ts = START + timedelta(seconds=float(packet.pts * stream.time_base))
            p = EncodedPacket(
                "cam-1", everything.stats.packets, ts, packet.pts, packet.dts,
                packet.is_keyframe, bytes(packet), header,
            )  # fmt: skip
            ten.add(p)
            cpu += time.thread_time() - c
            everything.add(p)
            most = max(most, ten.bytes)
        seconds = float(stream.duration * stream.time_base)
    return everything, cpu / seconds, int(most)


def plain_ffmpeg(violations: list[Violation], out: Path) -> list[float]:
    """`ffmpeg -c copy` of each violation's clip span from the same file (the limit)."""
    times = []
    for v in violations:
        t0 = (v.window_start - START).total_seconds() - v.evidence.pre_s
        t1 = (v.window_end - START).total_seconds() + v.evidence.post_s
        t = time.perf_counter()
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-ss", f"{t0:.3f}", "-i", str(H264),
             "-t", f"{t1 - t0:.3f}", "-c", "copy", "-movflags", "+faststart", str(out)],
            check=True,
        )  # fmt: skip
        times.append(time.perf_counter() - t)
    return sorted(times)


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


def run_path(
    work: Path,
    name: str,
    ring: Ring,
    args: argparse.Namespace,
    span: float,
    devices: tuple[str, ...] | None = None,
) -> dict[str, float]:
    """Build `args.packages` packages through one path (only `devices`' evidence, when given);
    verify the chain; print its figures."""
    base = work / name.replace(" ", "-").replace(",", "")
    base.mkdir()
    config = load_config(site(base, args.preset))
    journal = Journal(base / "journal.sqlite")
    fill_journal(journal, 3600)
    store = CaseStore(base / "cases.sqlite")
    signer = Signer.load_or_create(base / "key.pem")
    builder = EvidenceBuilder(config, signer, ring, journal)
    service = EvidenceService(builder, store)
    service.handle(only(violation(10_000, args.dwell_s, span), devices))  # warm-up
    times = []
    cpu0 = time.process_time()
    began = time.perf_counter()
    for n in range(args.packages):
        v = only(violation(n, args.dwell_s, span), devices)
        t = time.perf_counter()
        case = service.handle(v)
        times.append(time.perf_counter() - t)
        assert case.state.value == "evidence_complete"
    wall = time.perf_counter() - began
    cpu = (time.process_time() - cpu0) / args.packages
    report = verify_chain(builder.root, signer.verifier)
    assert report.ok, report.findings
    size = sum(f.stat().st_size for f in builder.root.rglob("*") if f.is_file())
    clips = sorted(builder.root.rglob("clip.mp4"))
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_frames", "-read_intervals",
         "%+#1", "-show_entries", "frame=key_frame", "-of", "csv=p=0", str(clips[-1])],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    keyframe = probe.stdout.split(",")[0].strip() == "1"
    times.sort()
    print(f"[{name}] packages: {args.packages} (+1 warm-up), chain verified: {report.packages}, "
          f"clip starts on a keyframe (ffprobe): {keyframe}")  # fmt: skip
    print(f"[{name}] package size: {size / (args.packages + 1) / 1e6:.2f} MB average")
    print(f"[{name}] per package: p50 {statistics.median(times):.3f} s, "
          f"p95 {times[int(0.95 * (len(times) - 1))]:.3f} s, max {times[-1]:.3f} s; "
          f"cpu {cpu:.3f} s; {args.packages / wall * 60:.1f} packages/min")  # fmt: skip
    return {"p50": statistics.median(times), "cpu": cpu}


def only(v: Violation, devices: tuple[str, ...] | None) -> Violation:
    return v if devices is None else dataclasses.replace(v, devices=devices)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", type=int, default=30)
    parser.add_argument("--dwell-s", type=float, default=15.0)
    parser.add_argument("--preset", default="ultrafast", help="x264 preset (the config default)")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    args = parser.parse_args()
    if not H264.exists():
        sys.exit(f"{H264} missing: run `make footage`")
    work = Path(tempfile.mkdtemp(prefix="bench-evidence-"))
    try:
        packets, packet_cpu, packet_bytes = load_packets()
        jpegs, jpeg_cpu, jpeg_bytes = load_ring()
        span = (jpegs.frames[-1].ts - jpegs.frames[0].ts).total_seconds()
        clip_s = 10 + args.dwell_s + 5
        print(f"footage: {H264.name} (H.264, 768x576, 10 fps, GOP 2 s), {len(jpegs.frames)} "
              f"frames; clip {clip_s:.0f} s ({clip_s * 10:.0f} frames); load "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")  # fmt: skip
        print(
            f"recording cpu per camera: packets {packet_cpu * 100:.3f} % of a core, "
            f"JPEG ring {jpeg_cpu * 100:.1f} % (ratio {jpeg_cpu / packet_cpu:.0f}x)"
        )
        print(
            f"ring memory for 10 s: packets {packet_bytes / 1e6:.2f} MB, "
            f"JPEG ring {jpeg_bytes / 1e6:.2f} MB (ratio {jpeg_bytes / packet_bytes:.1f}x)"
        )
        copy = run_path(work, "copy", Ring([], packets), args, span)
        run_path(work, "copy, camera only", Ring([], packets), args, span, ("cam-1",))
        x264 = run_path(work, f"x264-{args.preset}", jpegs, args, span)
        limit = plain_ffmpeg([violation(n, args.dwell_s, span) for n in range(10)], work / "ff.mp4")
        plain = statistics.median(limit)
        print(
            f"limit_ffmpeg_copy_s: {plain:.3f} s (plain `ffmpeg -c copy` of the same clip "
            "from the same file, p50, process start included)"
        )
        print(f"ratio_to_ffmpeg_copy: {copy['p50'] / plain:.2f} (stream-copy package / limit)")
        print(
            f"ratio_to_x264_path: {copy['p50'] / x264['p50']:.2f} (stream-copy package / "
            f"today's JPEG ring + x264 package, {x264['p50'] / copy['p50']:.1f}x faster)"
        )
        print(f"seconds_per_package: {copy['p50']:.3f} s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
