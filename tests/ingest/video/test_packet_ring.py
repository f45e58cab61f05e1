"""The pre-roll as the camera's own packets: whole GOPs, bounded in time and bytes, read from a
real H.264 file by the PyAV reader (frames decoded for analysis, packets kept as they came)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from ingest.frames import Frame
from ingest.video.packetring import EncodedPacket, PacketRing, StreamHeader
from ingest.video.sources import VideoSource

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def packets_of(path: Path, device_id: str = "cam-1") -> list[EncodedPacket]:
    out: list[EncodedPacket] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        header = None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            header = header or StreamHeader.of(stream, packet)
            ts = START + timedelta(seconds=float(packet.pts * stream.time_base))
            out.append(
                EncodedPacket(
                    device_id, len(out), ts, packet.pts, packet.dts, packet.is_keyframe,
                    bytes(packet), header,
                )
            )  # fmt: skip
    return out


def test_ring_keeps_whole_gops_for_its_window_and_cuts_from_a_keyframe(vtest_h264: Path) -> None:
    packets = packets_of(vtest_h264)
    ring = PacketRing(seconds=4.0)
    most = 0
    for packet in packets:
        ring.add(packet)
        most = max(most, ring.seconds)
    kept = ring.between(START, START + timedelta(days=1))
    assert kept is not None and kept.packets[0].keyframe
    # the window plus at most one GOP (2 s at this footage's keyframe interval)
    assert 4.0 <= most <= 4.0 + 2.0, most
    assert len(ring) == len(kept.packets) and ring.bytes == sum(len(p.data) for p in kept.packets)

    ring = PacketRing(seconds=60.0)
    for packet in packets[:400]:
        ring.add(packet)
    t0, t1 = START + timedelta(seconds=13.05), START + timedelta(seconds=21.0)
    clip = ring.between(t0, t1)
    assert clip is not None
    keys = [p for p in packets[:400] if p.keyframe and p.ts <= t0]
    assert clip.packets[0] is keys[-1]  # the keyframe before the pre-roll, no later
    assert clip.packets[-1].ts <= t1 < clip.packets[-1].ts + timedelta(seconds=0.1)
    assert ring.between(START + timedelta(seconds=41), START + timedelta(seconds=50)) is None


def test_ring_memory_is_bounded_by_bytes_and_restarts_on_a_new_stream(vtest_h264: Path) -> None:
    packets = packets_of(vtest_h264)
    ring = PacketRing(seconds=600.0, max_bytes=1_000_000)
    for packet in packets:
        ring.add(packet)
        gop = max(len(p.data) for p in packets) * 20
        assert ring.bytes <= 1_000_000 + gop
    assert ring.latest() is packets[-1]
    assert ring.between(START, START + timedelta(days=1)).packets[0].keyframe  # type: ignore[union-attr]

    # time running backwards (a file looped, a camera's clock reset): start afresh, on a key
    ring.add(packets[5])
    assert ring.stats.restarts == 1 and len(ring) == 0 and ring.stats.dropped_waiting_key == 1
    ring.add(packets[0])
    assert len(ring) == 1


def test_h264_file_source_records_packets_and_decodes_frames_on_their_clock(
    vtest_h264: Path,
) -> None:
    ring = PacketRing(seconds=600.0)
    buffered: list[Frame] = []
    source = VideoSource(
        "cam-1", str(vtest_h264), realtime=False, clock=lambda: START,
        on_frame=buffered.append, on_packet=ring.add,
    )  # fmt: skip
    frames: list[Frame] = []
    source.start()
    try:
        while (frame := source.read(10)) is not None:
            frames.append(frame)
    finally:
        source.stop()
    assert source.ended and source.stats.failures == 0, source.stats
    assert not buffered  # recorded as packets: no JPEG of any frame
    assert len(ring) == 795 and source.stats.frames == 795
    clip = ring.between(START, START + timedelta(days=1))
    assert clip is not None
    packet_times = {p.ts for p in clip.packets}
    assert all(f.ts in packet_times for f in frames)
    assert frames[-1].ts == START + timedelta(seconds=79.4)


def test_other_codecs_keep_the_jpeg_ring(vtest: Path) -> None:
    """vtest.avi is MPEG-4 part 2: nothing to copy, frames go to `on_frame` as before."""
    ring = PacketRing()
    buffered: list[Frame] = []
    source = VideoSource(
        "cam-1", str(vtest), realtime=False, on_frame=buffered.append, on_packet=ring.add
    )
    source.start()
    try:
        while source.read(10) is not None:
            pass
    finally:
        source.stop()
    assert len(ring) == 0 and len(buffered) == source.stats.frames > 700


@pytest.fixture(scope="session")
def vtest_h264() -> Path:
    path = Path(__file__).resolve().parents[3] / "var" / "footage" / "vtest-h264.mp4"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make footage`")
    return path
