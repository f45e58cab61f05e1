"""Packages whose clips were cut by stream copy from the H.264 footage's own packets keep the
disk quota and the chain working: oldest closed cases go first, open ones stay, the rest
verify and every remaining clip still starts on a keyframe. Their follow-up packages too."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore, State
from evidence.keys import Signer
from evidence.package import package_dirs
from evidence.retention import Retention
from evidence.service import EvidenceService
from evidence.verify import verify_chain, verify_package
from ingest.frames import EncodedFrame
from ingest.video.packetring import EncodedPacket, PacketClip, PacketRing, StreamHeader
from tests.evidence.evidence_support import REPO, make_violation, site_config
from tests.evidence.test_followup import _clearance

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
H264 = REPO / "var" / "footage" / "vtest-h264.mp4"


class Packets:
    """The first 30 s of the H.264 footage as cam-1's packet ring."""

    def __init__(self, path: Path) -> None:
        self.ring = PacketRing(seconds=60.0)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            header = None
            for n, packet in enumerate(container.demux(stream)):
                if packet.size == 0 or packet.pts * stream.time_base > 30:
                    continue
                header = header or StreamHeader.of(stream, packet)
                ts = START + timedelta(seconds=float(packet.pts * stream.time_base))
                self.ring.add(
                    EncodedPacket(
                        "cam-1", n, ts, packet.pts, packet.dts, packet.is_keyframe,
                        bytes(packet), header,
                    )
                )  # fmt: skip

    def frames_between(self, device_id: str, t0: datetime, t1: datetime) -> list[EncodedFrame]:
        return []

    def clip_between(self, device_id: str, t0: datetime, t1: datetime) -> PacketClip | None:
        return self.ring.between(t0, t1) if device_id == "cam-1" else None


@pytest.fixture(scope="module")
def packets() -> Packets:
    if not H264.is_file():
        pytest.fail(f"{H264} is missing: run `make footage`")
    return Packets(H264)


def first_frame_is_key(ffprobe: str, clip: Path) -> bool:
    out = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v", "-show_frames", "-read_intervals",
         "%+#1", "-show_entries", "frame=key_frame", "-of", "csv=p=0", str(clip)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.split(",")[0].strip() == "1"


def test_quota_prunes_stream_copy_packages_and_the_chain_stays_whole(
    tmp_path: Path, packets: Packets, ffprobe: str
) -> None:
    store = CaseStore(tmp_path / "cases.sqlite")
    signer = Signer.load_or_create(tmp_path / "key.pem")
    builder = EvidenceBuilder(site_config(tmp_path), signer, packets, None)
    service = EvidenceService(builder, store)
    cases = [
        service.handle(make_violation(START, i, dwell_s=2.0, pre_s=1.0, post_s=1.0))
        for i in range(3)
    ]
    assert all(c.state == State.EVIDENCE_COMPLETE for c in cases)
    for case in cases[1:]:
        for state in (State.SUBMITTED, State.ACKNOWLEDGED, State.CONFIRMED, State.NOTIFIED,
                      State.RECTIFIED, State.CLOSED):  # fmt: skip
            store.transition(case.case_id, state)
    sizes = {
        p.name: sum(f.stat().st_size for f in p.rglob("*")) for p in package_dirs(builder.root)
    }
    quota = sum(sizes.values()) - sizes[cases[1].case_id] // 2

    report = Retention(builder.root, store, quota_bytes=quota).enforce()

    assert report.pruned == [cases[1].case_id] and report.kept_open == [cases[0].case_id]
    left = package_dirs(builder.root)
    assert {p.name for p in left} == {cases[0].case_id, cases[2].case_id}
    chain = verify_chain(builder.root, signer.verifier)
    assert chain.ok and chain.packages == 2 and chain.pruned == 1, chain.findings
    for package in left:
        assert first_frame_is_key(ffprobe, package / "media/cam-1/clip.mp4")


def test_after_package_of_a_packet_camera_has_its_still(tmp_path: Path, packets: Packets) -> None:
    """The follow-up ("after") package's view once the subject left: decoded from the packets
    at the end of the post-roll and JPEG-encoded once."""
    store = CaseStore(tmp_path / "cases.sqlite")
    signer = Signer.load_or_create(tmp_path / "key.pem")
    builder = EvidenceBuilder(site_config(tmp_path), signer, packets, None)
    service = EvidenceService(builder, store)
    v = make_violation(START)
    case = service.handle(v)
    clearance = _clearance(v, 5.0)  # START + 18 s, the post-roll to 20 s: within the 30 s
    assert service.clear(clearance) is not None

    result = service.follow_up(case.case_id)

    assert result is not None and result.created
    report, manifest = verify_package(result.path)
    assert report.ok and manifest is not None, report.findings
    assert manifest["problems"] == []
    shot = manifest["media"]["cam-1"]["snapshots"]["after"]
    assert datetime.fromisoformat(shot["at"]["utc"]) == clearance.cleared_at + timedelta(
        seconds=v.evidence.post_s
    )
    assert (result.path / "media/cam-1/after.raw.jpg").read_bytes()[:2] == b"\xff\xd8"
