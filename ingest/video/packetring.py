"""The evidence pre-roll as the camera's own encoded packets (H.264/H.265), not re-encoded.

A camera stream that already carries H.264 or H.265 is kept as it arrives: whole GOPs (a
keyframe and the packets after it) for the last `seconds`, so any cut can start on a keyframe.
Recording costs a copy of each packet's bytes; nothing is encoded. `between(t0, t1)` returns a
`PacketClip` from the keyframe at or before `t0` to the last packet at or before `t1`, which
`evidence.clips` writes to MP4 by stream copy.

Packet times are the capture clock of the decoded frames (`Frame.ts`): the session's origin
plus the packet's presentation time, so a clip and the analysis agree on when things happened.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import av

RECORDABLE = frozenset({"h264", "hevc"})
"""Codecs kept as packets; anything else (MJPEG, MPEG-4 part 2, ...) goes to the JPEG ring."""


@dataclass(frozen=True, slots=True, eq=False)
class StreamHeader:
    """What a muxer needs to write a session's packets: codec, size, time base, parameter sets.

    `template` is a tiny NUT file holding the stream's codec parameters as the camera sent
    them (Annex B or avcC) and its first keyframe: PyAV copies a stream's parameters from an
    opened stream, and this reopens one long after the camera's own connection is gone.
    """

    codec: str
    width: int
    height: int
    time_base: Fraction
    extradata: bytes
    template: bytes = field(repr=False)
    session: int = 0

    def same_stream(self, other: StreamHeader) -> bool:
        """Packets of both can share one clip (same codec, size and parameter sets)."""
        return (self.codec, self.width, self.height, self.extradata) == (
            other.codec,
            other.width,
            other.height,
            other.extradata,
        )

    @classmethod
    def of(cls, stream: Any, keyframe: Any, session: int = 0) -> StreamHeader:
        """From an open input video stream and its first keyframe packet."""
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="nut") as out:
            copy = out.add_stream_from_template(stream)
            packet = av.Packet(bytes(keyframe))
            packet.pts = packet.dts = 0
            packet.is_keyframe = True
            packet.time_base = stream.time_base
            packet.stream = copy
            out.mux(packet)
        ctx = stream.codec_context
        return cls(
            codec=ctx.name,
            width=ctx.width,
            height=ctx.height,
            time_base=stream.time_base,
            extradata=bytes(ctx.extradata or b""),
            template=buffer.getvalue(),
            session=session,
        )

    def open_template(self) -> Any:
        """An input container whose video stream is the template for a stream-copy output."""
        return av.open(io.BytesIO(self.template), format="nut")


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One compressed frame of a camera's stream, as the camera sent it."""

    device_id: str
    index: int
    """Frame position in the source (as `Frame.index`)."""
    ts: datetime
    """Capture time on the decoded frames' clock."""
    pts: int
    dts: int
    """Presentation and decoding times in `header.time_base`."""
    keyframe: bool
    data: bytes = field(repr=False)
    header: StreamHeader = field(repr=False)


@dataclass(frozen=True, slots=True)
class PacketClip:
    """Packets to cut from: the first is a keyframe, all of one compatible stream."""

    device_id: str
    header: StreamHeader
    packets: tuple[EncodedPacket, ...]

    @property
    def start(self) -> datetime:
        return self.packets[0].ts

    @property
    def end(self) -> datetime:
        return self.packets[-1].ts


@dataclass
class PacketRingStats:
    packets: int = 0
    dropped_waiting_key: int = 0
    """Packets before a session's first keyframe (undecodable on their own)."""
    restarts: int = 0
    """Ring emptied: a stream with other parameters, or time running backwards."""


class PacketRing:
    """The last `seconds` of a stream as whole GOPs, at most `max_bytes` (the oldest GOP goes).

    Thread-safe: the source's reader thread adds, the evidence worker reads.
    """

    def __init__(self, seconds: float = 10.0, max_bytes: int = 64 << 20) -> None:
        self.window = timedelta(seconds=seconds)
        self.max_bytes = max_bytes
        self.bytes = 0
        self.stats = PacketRingStats()
        self._gops: deque[list[EncodedPacket]] = deque()
        self._session: StreamHeader | None = None
        self._lock = threading.Lock()

    def add(self, packet: EncodedPacket) -> None:
        with self._lock:
            last = self._gops[-1][-1] if self._gops else None
            if last is not None and (
                not packet.header.same_stream(last.header) or packet.ts < last.ts
            ):
                self._clear()
            if packet.header is not self._session:
                if not packet.keyframe:
                    self.stats.dropped_waiting_key += 1
                    return
                self._session = packet.header
            if packet.keyframe or not self._gops:
                self._gops.append([packet])
            else:
                self._gops[-1].append(packet)
            self.bytes += len(packet.data)
            self.stats.packets += 1
            horizon = packet.ts - self.window
            while len(self._gops) > 1 and (
                self._gops[1][0].ts <= horizon or self.bytes > self.max_bytes
            ):
                self.bytes -= sum(len(p.data) for p in self._gops.popleft())

    def _clear(self) -> None:
        self._gops.clear()
        self.bytes = 0
        self._session = None
        self.stats.restarts += 1

    def between(self, t0: datetime, t1: datetime) -> PacketClip | None:
        """From the keyframe at or before `t0` (or the oldest kept) to the last packet at or
        before `t1`; None when nothing that old-or-new is kept."""
        with self._lock:
            gops = [list(g) for g in self._gops]
        if not gops or gops[0][0].ts > t1:
            return None
        first = 0
        for i, gop in enumerate(gops):
            if gop[0].ts <= t0:
                first = i
        packets = [p for gop in gops[first:] for p in gop if p.ts <= t1]
        if not packets or packets[-1].ts < t0:
            return None
        return PacketClip(packets[0].device_id, packets[0].header, tuple(packets))

    def latest(self) -> EncodedPacket | None:
        with self._lock:
            return self._gops[-1][-1] if self._gops else None

    @property
    def seconds(self) -> float:
        """Span kept, first keyframe to newest packet."""
        with self._lock:
            if not self._gops:
                return 0.0
            return (self._gops[-1][-1].ts - self._gops[0][0].ts).total_seconds()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(g) for g in self._gops)
