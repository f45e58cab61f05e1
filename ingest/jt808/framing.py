"""JT/T 808 framing: 0x7E delimits a frame, 0x7D escapes (0x7D 0x02 is 0x7E, 0x7D 0x01 is 0x7D),
and the last byte before the closing 0x7E is the XOR of every byte before it (the check code).

`FrameSplitter` cuts a TCP byte stream into frames however it was split across reads. Bytes
before the first 0x7E are junk (counted). A frame's closing 0x7E may also open the next (some
terminals share one delimiter between frames); two 0x7E in a row delimit nothing, skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import xor

FLAG = 0x7E
ESC = 0x7D
_FLAG = b"\x7e"
_ESC = b"\x7d"


class FrameError(ValueError):
    """A frame that cannot be a message. `reason` is the dead-letter/counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_code(data: bytes) -> int:
    """XOR of every byte."""
    if len(data) > 64:
        # Fold the bytes as one big integer: much faster than a byte loop for long frames.
        value = int.from_bytes(data, "little")
        width = len(data)
        while width > 1:
            half = (width + 1) // 2
            value = (value & ((1 << (8 * half)) - 1)) ^ (value >> (8 * half))
            width = half
        return value
    return reduce(xor, data, 0)


def escape(data: bytes) -> bytes:
    return data.replace(_ESC, b"\x7d\x01").replace(_FLAG, b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    if ESC not in data:
        return data
    parts = data.split(_ESC)
    out = [parts[0]]
    for part in parts[1:]:
        if not part or part[0] not in (1, 2):
            shown = f"0x{part[0]:02x}" if part else "the end of the frame"
            raise FrameError("bad_escape", f"0x7d followed by {shown} (0x01 or 0x02 expected)")
        out.append(b"\x7d" if part[0] == 1 else b"\x7e")
        out.append(part[1:])
    return b"".join(out)


def wrap(message: bytes) -> bytes:
    """Header and body → a frame on the wire: check code appended, escaped, delimited."""
    return b"\x7e" + escape(message + bytes((check_code(message),))) + b"\x7e"


def unwrap(frame: bytes) -> bytes:
    """A frame's content (between the delimiters, still escaped) → header and body, the check
    code verified and removed."""
    raw = unescape(frame)
    if len(raw) < 2:
        raise FrameError("truncated", f"{len(raw)} bytes is too short for a message")
    expected = check_code(raw[:-1])
    if raw[-1] != expected:
        raise FrameError(
            "bad_check_code", f"check code 0x{raw[-1]:02x}, the bytes give 0x{expected:02x}"
        )
    return raw[:-1]


@dataclass(slots=True)
class Oversized:
    """A frame longer than the limit: what was seen of it."""

    head: bytes
    size: int


class FrameSplitter:
    """Feed it bytes as they arrive; it returns the complete frames (escaped content without
    delimiters) and, past `max_frame` bytes without a closing 0x7E, an Oversized marker (the
    caller closes the connection: the rest of the stream cannot be trusted)."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._open = False
        self.junk = 0
        """Bytes seen outside any frame."""

    @property
    def partial(self) -> bool:
        """A frame has begun (bytes after its delimiter) and not ended."""
        return self._open and bool(self._buf)

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        buf = self._buf
        buf += data
        out: list[bytes | Oversized] = []
        pos = 0
        while True:
            if not self._open:
                start = buf.find(_FLAG, pos)
                if start < 0:
                    self.junk += len(buf) - pos
                    pos = len(buf)
                    break
                self.junk += start - pos
                pos = start + 1
                self._open = True
            end = buf.find(_FLAG, pos)
            if end < 0:
                if len(buf) - pos > self.max_frame:
                    out.append(Oversized(bytes(buf[pos : pos + 64]), len(buf) - pos))
                    buf.clear()
                    self._open = False
                    return out
                break
            if end == pos:
                pos = end + 1  # 0x7E 0x7E: the second opens the next frame
                continue
            out.append(bytes(buf[pos:end]))
            pos = end + 1  # still open: the closing delimiter may open the next frame
        del buf[:pos]
        return out
