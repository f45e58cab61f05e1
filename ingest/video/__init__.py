"""Video into the pipeline: OpenCV sources, WebRTC (WHIP) ingest, MQTT snapshots, the ring buffer.

Every source yields `ingest.frames.Frame`; each camera keeps recent frames JPEG-encoded in a
`FrameRing` for the evidence pre-roll.
"""

from ingest.video.ring import FrameRing
from ingest.video.snapshots import SnapshotError, snapshot_to_frame
from ingest.video.sources import FileFrames, VideoSource, VideoSourceStats, open_capture

__all__ = [
    "FileFrames",
    "FrameRing",
    "SnapshotError",
    "VideoSource",
    "VideoSourceStats",
    "open_capture",
    "snapshot_to_frame",
]
