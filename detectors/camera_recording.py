"""A camera's recent past for evidence: the pre-roll as JPEG frames and as the camera's own
packets, and the stretch of either between two instants (the clip of a violation)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from ingest.frames import EncodedFrame, Frame
from ingest.video.packetring import EncodedPacket, PacketClip, PacketRing
from ingest.video.ring import FrameRing


class CameraRecording:
    """The frame ring (raw-frame sources: WebRTC, MQTT snapshots, other codecs) and the packet
    ring (H.264/H.265 cameras, whose clips are stream copies; their frame ring stays empty)."""

    def __init__(self, preroll_s: float, jpeg_quality: int, errors: Counter[str]) -> None:
        self.ring = FrameRing(preroll_s, jpeg_quality)
        self.packets = PacketRing(preroll_s)
        self.errors = errors
        """The camera's error counter: a frame that cannot be encoded counts as `encode`."""

    def add_frame(self, frame: Frame) -> None:
        try:
            self.ring.add(frame)
        except ValueError:
            self.errors["encode"] += 1

    def add_packet(self, packet: EncodedPacket) -> None:
        self.packets.add(packet)

    def frames_between(self, t0: datetime, t1: datetime) -> list[EncodedFrame]:
        return self.ring.between(t0, t1)

    def clip_between(self, t0: datetime, t1: datetime) -> PacketClip | None:
        return self.packets.between(t0, t1)
