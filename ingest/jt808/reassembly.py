"""Sub-packages: a long message split over several frames, each with the whole count and its
own 1-based index, their serial numbers consecutive. Parts wait here (bounded in bytes and time)
until the message is whole."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from ingest.jt808.message import Header

_WORD = struct.Struct(">H")


@dataclass(slots=True)
class _Group:
    first: Header
    parts: dict[int, bytes] = field(default_factory=dict)
    started: float = 0.0
    size: int = 0


@dataclass(frozen=True, slots=True)
class Whole:
    header: Header
    """The last part's header (the one the completing reply answers)."""
    body: bytes


class Reassembler:
    def __init__(self, max_bytes: int, timeout_s: float) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._groups: dict[tuple[str, int, int, int], _Group] = {}
        self._held = 0

    def add(self, header: Header, body: bytes) -> Whole | list[int] | None:
        """A part in; the whole message once every part is here; the missing indexes when the
        last part came and some are missing (the terminal is asked for them, 0x8003); None
        while parts are still expected."""
        key = (header.phone, header.msg_id, header.packages, header.serial - header.index + 1)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(header, started=time.monotonic())
        if header.index not in group.parts:
            if self._held + len(body) > self.max_bytes:
                raise OverflowError(
                    f"sub-packages past {self.max_bytes} bytes held (message 0x"
                    f"{header.msg_id:04x} of {header.packages} parts)"
                )
            group.parts[header.index] = body
            group.size += len(body)
            self._held += len(body)
        if len(group.parts) == header.packages:
            del self._groups[key]
            self._held -= group.size
            body = b"".join(group.parts[i] for i in range(1, header.packages + 1))
            return Whole(header, body)
        if header.index == header.packages:
            return [i for i in range(1, header.packages + 1) if i not in group.parts]
        return None

    def expire(self) -> list[Header]:
        """Drop groups older than the timeout; returns their first headers."""
        now = time.monotonic()
        old = [k for k, g in self._groups.items() if now - g.started > self.timeout_s]
        out = []
        for key in old:
            group = self._groups.pop(key)
            self._held -= group.size
            out.append(group.first)
        return out


def resend_request(header: Header, missing: list[int]) -> bytes:
    """0x8003 body: the first part's serial and the missing indexes (count BYTE in 2013,
    WORD in 2019)."""
    first = (header.serial - header.index + 1) & 0xFFFF
    count = bytes((len(missing),)) if header.version is None else _WORD.pack(len(missing))
    return _WORD.pack(first) + count + b"".join(_WORD.pack(i) for i in missing)
