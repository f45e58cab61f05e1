"""Reading a stream with PyAV: its packets kept as they are, decoded only for analysis.

`VideoSource` reads this way when it has an `on_packet` (the camera's `PacketRing`) and the
stream is live (rtsp://, http://) or a file holding H.264/H.265. Each H.264/H.265 packet goes to
`on_packet` unchanged; each decoded frame goes to the consumer as with the OpenCV reader. Other
codecs are decoded here too and buffered as JPEGs through `on_frame`.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import av

from ingest.frames import Frame
from ingest.video.packetring import RECORDABLE, EncodedPacket, StreamHeader

if TYPE_CHECKING:
    from ingest.video.sources import VideoSource

log = logging.getLogger(__name__)


def file_codec(path: str) -> str | None:
    """The video codec of a file (None: unreadable or no video)."""
    try:
        with av.open(path.removeprefix("file://")) as container:
            videos = container.streams.video
            return videos[0].codec_context.name if videos else None
    except (av.error.FFmpegError, OSError):
        return None


def open_options(url: str) -> dict[str, str]:
    """RTSP over TCP (UDP loses packets on busy networks and smears whole frames), without
    probing: the SDP names codec and size, and seconds of probing arrive as one burst that
    the origin of the stream's clock would be late by."""
    if url.startswith(("rtsp://", "rtsps://")):
        return {"rtsp_transport": "tcp", "analyzeduration": "0"}
    return {}


def read_av(source: VideoSource) -> bool:
    """Open, read until the stream ends or fails; True if any frame came through."""
    stats = source.stats
    stats.opens += 1
    try:
        container = av.open(
            source.url.removeprefix("file://"),
            options=open_options(source.url),
            timeout=(source.timeout_s, source.timeout_s),
        )
    except (av.error.FFmpegError, OSError) as exc:
        stats.failures += 1
        stats.last_error = f"cannot open: {exc}"
        return False
    delivered = False
    read = 0
    try:
        if not container.streams.video:
            stats.failures += 1
            stats.last_error = "no video stream"
            return False
        stream = container.streams.video[0]
        stats.connected = True
        codec = stream.codec_context.name
        recorded = source.on_packet is not None and codec in RECORDABLE
        session = stats.opens
        header: StreamHeader | None = None
        declared = stream.frames or 0
        time_base = stream.time_base
        origin = source.clock()
        started = time.monotonic()
        first_pts: int | None = None
        last_pts = -1
        packet_index = source._index

        def deliver(packet: av.Packet | None, pts: int) -> None:
            nonlocal delivered, read
            try:
                frames = stream.decode(packet)
            except av.error.InvalidDataError:
                stats.corrupt += 1
                return
            for decoded in frames:
                fpts = decoded.pts if decoded.pts is not None else pts
                ts = origin + timedelta(seconds=float((fpts - (first_pts or 0)) * time_base))
                delivered = True
                if source.live and source._lost_at is not None:
                    source._back_again()
                image = decoded.to_ndarray(format="bgr24")
                source._publish(Frame(source.device_id, source._index, ts, image), recorded)
                source._index += 1
                read += 1

        for packet in container.demux(stream):
            if source._stop.is_set():
                break
            if packet.size == 0:
                deliver(None, last_pts)  # the end: what the decoder still holds
                continue
            pts = packet.pts if packet.pts is not None else packet.dts
            pts = last_pts + 1 if pts is None else pts
            dts = packet.dts if packet.dts is not None else pts
            last_pts = max(last_pts, pts)
            if first_pts is None:
                first_pts = pts
            offset = float((pts - first_pts) * time_base)
            if not source.live and source.realtime:
                wait = started + offset - time.monotonic()
                if wait > 0:
                    source._stop.wait(wait)
            if recorded:
                if header is None and packet.is_keyframe:
                    header = StreamHeader.of(stream, packet, session)
                if header is not None:
                    source.on_packet(  # type: ignore[misc]
                        EncodedPacket(
                            source.device_id,
                            packet_index,
                            origin + timedelta(seconds=offset),
                            pts,
                            dts,
                            packet.is_keyframe,
                            bytes(packet),
                            header,
                        )
                    )
            packet_index += 1
            deliver(packet, pts)
    except (av.error.FFmpegError, OSError) as exc:
        stats.last_error = f"stream failed: {exc}"
        log.info("%s: %s: %s", source.device_id, source.url, stats.last_error)
    finally:
        stats.connected = False
        container.close()
    if source.live or source._stop.is_set():
        stats.failures += 1
        stats.last_error = "stream stopped delivering"
        if source.live and delivered and not source._stop.is_set():
            source._lost_at = time.monotonic()
        return delivered
    return source._file_ended(read, declared)
