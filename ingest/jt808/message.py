"""The JT/T 808 message header, both editions, and building messages to send.

2013: id WORD, properties WORD, phone BCD[6], serial WORD [, packages WORD, index WORD].
2019: the properties' bit 14 set, then a protocol version BYTE and the phone as BCD[10].
Properties: body length (bits 0-9), encryption (10-12), sub-package (13), version flag (14).
A reply repeats the terminal's edition and phone bytes, so it reads it as its own.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ingest.jt808.framing import FrameError, wrap

_HEAD = struct.Struct(">HH")
_WORD = struct.Struct(">H")
_PARTS = struct.Struct(">HH")

MAX_BODY = 0x3FF


@dataclass(frozen=True, slots=True)
class Header:
    msg_id: int
    body_length: int
    encryption: int
    version: int | None
    """The 2019 protocol version byte; None for 2013."""
    phone_bcd: bytes
    serial: int
    packages: int = 0
    """Sub-packages of the whole message (0: not split)."""
    index: int = 0
    """This sub-package's number, 1-based."""

    @property
    def phone(self) -> str:
        """The phone number without its padding zeros (see ingest.config.jt808)."""
        return self.phone_bcd.hex().lstrip("0") or "0"

    @property
    def edition(self) -> str:
        return "2013" if self.version is None else "2019"


@dataclass(frozen=True, slots=True)
class Message:
    header: Header
    body: bytes


def bcd_digits(raw: bytes, what: str) -> str:
    text = raw.hex()
    if not text.isdigit():
        raise FrameError("bad_bcd", f"{what} {text!r} is not BCD (digits 0-9 only)")
    return text


def parse(raw: bytes) -> Message:
    """An unescaped message without its check code → header and body."""
    if len(raw) < 12:
        raise FrameError("truncated", f"{len(raw)} bytes is too short for a header")
    msg_id, props = _HEAD.unpack_from(raw)
    length = props & MAX_BODY
    encryption = (props >> 10) & 0x7
    split = bool(props & 0x2000)
    if props & 0x4000:
        if len(raw) < 17:
            raise FrameError("truncated", f"{len(raw)} bytes is too short for a 2019 header")
        version: int | None = raw[4]
        phone = raw[5:15]
        (serial,) = _WORD.unpack_from(raw, 15)
        pos = 17
    else:
        version, phone = None, raw[4:10]
        (serial,) = _WORD.unpack_from(raw, 10)
        pos = 12
    bcd_digits(phone, "terminal phone")
    packages = index = 0
    if split:
        if len(raw) < pos + 4:
            raise FrameError("truncated", "a sub-package header without its package numbers")
        packages, index = _PARTS.unpack_from(raw, pos)
        pos += 4
        if packages < 1 or not 1 <= index <= packages:
            raise FrameError(
                "bad_subpackage", f"sub-package {index} of {packages} (1..total expected)"
            )
    body = raw[pos:]
    if len(body) != length:
        raise FrameError(
            "bad_length", f"header says a {length}-byte body, the frame carries {len(body)}"
        )
    header = Header(msg_id, length, encryption, version, phone, serial, packages, index)
    return Message(header, body)


def build(
    msg_id: int,
    body: bytes,
    *,
    phone_bcd: bytes,
    serial: int,
    version: int | None,
    packages: int = 0,
    index: int = 0,
) -> bytes:
    """A message on the wire (framed, escaped). `version` None: the 2013 header."""
    if len(body) > MAX_BODY:
        raise ValueError(f"a body of {len(body)} bytes needs sub-packages (at most {MAX_BODY})")
    props = len(body) | (0x2000 if packages else 0)
    if version is None:
        head = _HEAD.pack(msg_id, props) + phone_bcd[-6:].rjust(6, b"\0")
    else:
        head = _HEAD.pack(msg_id, props | 0x4000) + bytes((version,))
        head += phone_bcd[-10:].rjust(10, b"\0")
    head += _WORD.pack(serial & 0xFFFF)
    if packages:
        head += _PARTS.pack(packages, index)
    return wrap(head + body)


def phone_bcd(phone: str, version: int | None) -> bytes:
    """A phone number → its BCD header field of that edition (zero-padded on the left)."""
    digits = 12 if version is None else 20
    if len(phone) > digits:
        raise ValueError(f"phone {phone!r} has more than {digits} digits")
    return bytes.fromhex(phone.rjust(digits, "0"))


def reply_to(header: Header, msg_id: int, body: bytes, serial: int) -> bytes:
    """A platform message to the terminal that sent `header`, in its edition."""
    return build(msg_id, body, phone_bcd=header.phone_bcd, serial=serial, version=header.version)


def general_response(header: Header, result: int, serial: int) -> bytes:
    """0x8001: the reply serial and id of what is answered, and the result (0 ok, 1 failed,
    2 message error, 3 not supported, 4 alarm confirmed)."""
    body = _WORD.pack(header.serial) + _WORD.pack(header.msg_id) + bytes((result,))
    return reply_to(header, 0x8001, body, serial)


def registration_response(header: Header, result: int, auth_code: str, serial: int) -> bytes:
    """0x8100: the reply serial, the result (0 ok, 1 vehicle registered, 2 no such vehicle,
    3 terminal registered, 4 no such terminal) and, on success, the auth code."""
    body = _WORD.pack(header.serial) + bytes((result,))
    if result == 0:
        body += auth_code.encode("ascii")
    return reply_to(header, 0x8100, body, serial)
