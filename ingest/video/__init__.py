"""Video into the pipeline: OpenCV sources, WebRTC (WHIP) ingest, MQTT snapshots, the ring buffer.

Every source yields `ingest.frames.Frame`. For the evidence pre-roll a camera whose stream
carries H.264/H.265 keeps its own packets in a `PacketRing` (clips cut by stream copy); other
sources keep recent frames JPEG-encoded in a `FrameRing`.
"""

from ingest.video.packetring import EncodedPacket, PacketClip, PacketRing
from ingest.video.ring import FrameRing
from ingest.video.snapshots import SnapshotError, snapshot_to_frame
from ingest.video.sources import FileFrames, VideoSource, VideoSourceStats, open_capture

__all__ = [
    "EncodedPacket",
    "FileFrames",
    "FrameRing",
    "PacketClip",
    "PacketRing",
    "SnapshotError",
    "VideoSource",
    "VideoSourceStats",
    "open_capture",
    "snapshot_to_frame",
]
