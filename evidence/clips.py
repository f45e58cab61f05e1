"""Evidence clips cut by stream copy from a camera's own packets, and stills decoded from them.

`write_copy_clip` muxes a `PacketClip` (keyframe first) into MP4 without decoding or encoding:
times rebased so the clip starts at 0 on its first (key)frame, the index (`moov`) at the front
(`+faststart`) so a browser plays it before the whole file is in. `stills` decodes only the
GOPs that hold the wanted moments and JPEG-encodes one frame per moment, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from fractions import Fraction

import av

from evidence.media import encode_jpeg
from evidence.plates import TRIES, _candidates
from ingest.frames import EncodedFrame
from ingest.video.packetring import EncodedPacket, PacketClip
from rules.violation import Violation

CLIP_TIME_BASE = Fraction(1, 90000)


def write_copy_clip(clip: PacketClip, path) -> dict[str, float | int | str | bool]:
    """The clip as MP4 by stream copy; returns clip facts."""
    header = clip.header
    first = clip.packets[0]
    last_dts = None
    with (
        header.open_template() as template,
        av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        stream = out.add_stream_from_template(template.streams.video[0])
        stream.time_base = CLIP_TIME_BASE
        if header.codec == "hevc":
            stream.codec_context.codec_tag = "hvc1"  # what browsers that play H.265 look for
        for p in clip.packets:
            pts = round((p.ts - first.ts).total_seconds() / CLIP_TIME_BASE)
            dts = pts - round((p.pts - p.dts) * p.header.time_base / CLIP_TIME_BASE)
            if last_dts is not None and dts <= last_dts:
                dts = last_dts + 1  # a camera's jittery or reset clock: muxers need dts rising
            pts = max(pts, dts)
            last_dts = dts
            packet = av.Packet(p.data)
            packet.pts, packet.dts = pts, dts
            packet.time_base = CLIP_TIME_BASE
            packet.is_keyframe = p.keyframe
            packet.stream = stream
            out.mux(packet)
    return {
        "frames": len(clip.packets),
        "frames_skipped": 0,
        "width": header.width,
        "height": header.height,
        "duration_s": (clip.end - clip.start).total_seconds(),
        "codec": header.codec,
        "stream_copy": True,
        "keyframes": sum(p.keyframe for p in clip.packets),
    }


def stills(clip: PacketClip, moments: Iterable[datetime], quality: int = 90) -> list[EncodedFrame]:
    """For each moment, the clip's frame nearest to it as a JPEG (oldest first). Each is decoded
    from the keyframe before it: at most one GOP of decoding per moment."""
    packets = clip.packets
    targets = sorted(
        {min(range(len(packets)), key=lambda i, t=t: abs((packets[i].ts - t).total_seconds()))
         for t in moments}
    )  # fmt: skip
    out: list[EncodedFrame] = []
    decoder = None
    position = -1
    for target in targets:
        key = max(i for i in range(target + 1) if packets[i].keyframe)
        if decoder is None or position < key or position >= target:
            decoder = _decoder(clip)
            position = key - 1
        image = None
        for i in range(position + 1, target + 1):
            decoded = _decode(decoder, packets[i], want=i == target)
            image = decoded if decoded is not None else image
        position = target
        if image is None:
            decoder = None  # the decoder holds the frame back: flush it (a fresh one next)
            image = _flush_last(clip, packets, key, target)
        if image is None:
            continue
        p = packets[target]
        height, width = image.shape[:2]
        out.append(
            EncodedFrame(p.device_id, p.index, p.ts, width, height, encode_jpeg(image, quality))
        )
    return out


def _decoder(clip: PacketClip):
    ctx = av.CodecContext.create(clip.header.codec, "r")
    ctx.thread_count = 1  # frame threads hold frames back; a few frames want none
    if clip.header.extradata:
        ctx.extradata = clip.header.extradata
    return ctx


def _packet(p: EncodedPacket) -> av.Packet:
    packet = av.Packet(p.data)
    packet.pts, packet.dts = p.pts, p.dts
    packet.time_base = p.header.time_base
    return packet


def _decode(decoder, p: EncodedPacket, want: bool):
    try:
        frames = decoder.decode(_packet(p))
    except av.error.InvalidDataError:
        return None
    if want:
        for frame in frames:
            if frame.pts == p.pts or frame.pts is None:
                return frame.to_ndarray(format="bgr24")
    return None


def _flush_last(clip: PacketClip, packets, key: int, target: int):
    decoder = _decoder(clip)
    found = None
    try:
        for i in range(key, target + 1):
            for frame in decoder.decode(_packet(packets[i])):
                if frame.pts == packets[target].pts:
                    found = frame
        for frame in decoder.decode(None):
            if frame.pts == packets[target].pts:
                found = frame
    except av.error.InvalidDataError:
        pass
    return None if found is None else found.to_ndarray(format="bgr24")


def still_times(v: Violation, camera_id: str, plates: bool) -> list[datetime]:
    """The moments this camera's stills are needed: the snapshots' (first seen, confirmed,
    latest) and, for a plate read, the candidate frames' (`evidence.plates`)."""
    obs = [o for o in v.observations if o.frame and o.frame.device_id == camera_id]
    first = min((o.first_seen for o in obs), default=v.window_start)
    latest = max((o.last_seen for o in obs), default=v.window_end)
    times = [first, v.opened_at, latest]
    if plates:
        times += [ts for ts, _ in _candidates(v, obs)[:TRIES]]
    return times
