"""One terminal connection: frames in, replies out. Locations are answered only after the
journal writer committed them; everything else is answered at once."""

from __future__ import annotations

import asyncio
import hmac
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ingest.config import Device, SiteConfig
from ingest.journal import DeadLetter
from ingest.jt808.convert import to_reading
from ingest.jt808.framing import FrameError, unwrap
from ingest.jt808.location import decode_location, split_batch
from ingest.jt808.message import (
    Header,
    Message,
    general_response,
    parse,
    registration_response,
    reply_to,
)
from ingest.jt808.reassembly import Reassembler, Whole, resend_request
from ingest.jt808.writer import Job
from ingest.readings import Reading

if TYPE_CHECKING:
    from ingest.jt808.server import Jt808Listener

log = logging.getLogger("streetwatch.jt808")

REGISTER, AUTH, HEARTBEAT, LOGOUT = 0x0100, 0x0102, 0x0002, 0x0003
LOCATION, BATCH = 0x0200, 0x0704
OK, FAILED, MESSAGE_ERROR, NOT_SUPPORTED = 0, 1, 2, 3
NO_SUCH_TERMINAL = 4


class Close(Exception):
    """End this connection (the reason is already counted and dead-lettered)."""


class Session:
    def __init__(self, listener: Jt808Listener, writer: asyncio.StreamWriter, peer: str) -> None:
        self.listener = listener
        self.config = listener.config
        self.stats = listener.stats
        self.writer = writer
        self.peer = peer
        self.authed = not listener.settings.require_auth
        self.device: Device | None = None
        self._serial = 0
        self._loop = asyncio.get_running_loop()
        self.parts = Reassembler(
            listener.settings.max_message_bytes, listener.settings.subpackage_timeout_s
        )

    def topic(self, header: Header | None = None) -> str:
        if header is None:
            return f"jt808/{self.peer}"
        return f"jt808/{header.phone}/0x{header.msg_id:04x}"

    def _next_serial(self) -> int:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def answer(self, header: Header, result: int) -> None:
        self.send(general_response(header, result, self._next_serial()))
        self.stats.inc("replies")

    def dead(self, topic: str, reason: str, detail: str, payload: bytes) -> None:
        self.listener.dead_letter(topic, reason, detail, payload)

    # ---- frames ---------------------------------------------------------------------------

    def frame(self, raw: bytes) -> None:
        self.stats.inc("frames")
        try:
            message = parse(unwrap(raw))
        except FrameError as exc:
            self.dead(self.topic(), exc.reason, exc.detail, raw)
            return
        header = message.header
        device = self.listener.devices.get(header.phone)
        if device is None:
            self.listener.unknown_terminal(header, raw, self.peer)
            if header.msg_id == REGISTER:
                self.send(registration_response(header, NO_SUCH_TERMINAL, "", self._next_serial()))
            raise Close
        if self.device is None:
            self.device = device
        if header.encryption:
            self.dead(self.topic(header), "encrypted", "RSA-encrypted bodies: not supported", raw)
            self.answer(header, NOT_SUPPORTED)
            return
        if header.packages:
            self._part(message, raw, device)
            return
        self.dispatch(header, message.body, raw, device)

    def _part(self, message: Message, raw: bytes, device: Device) -> None:
        header = message.header
        try:
            outcome = self.parts.add(header, message.body)
        except OverflowError as exc:
            self.dead(self.topic(header), "oversized", str(exc), raw)
            raise Close from None
        self.stats.inc("subpackages")
        if isinstance(outcome, Whole):
            self.dispatch(outcome.header, outcome.body, raw, device)
        elif isinstance(outcome, list):
            body = resend_request(header, outcome)
            self.send(reply_to(header, 0x8003, body, self._next_serial()))
            self.stats.inc("resend_requests")
        elif header.index < header.packages:
            self.answer(header, OK)  # held here; the last part is answered once journaled
        for expired in self.parts.expire():
            self.dead(
                self.topic(expired),
                "incomplete_subpackages",
                f"{expired.packages} parts, not all came within the timeout",
                b"",
            )

    def dispatch(self, header: Header, body: bytes, raw: bytes, device: Device) -> None:
        msg_id = header.msg_id
        if msg_id in (LOCATION, BATCH):
            if not self.authed:
                self.dead(self.topic(header), "not_authenticated", "location before 0x0102", raw)
                raise Close
            self._locations(header, body, raw, device)
        elif msg_id == HEARTBEAT:
            self.stats.inc("heartbeats")
            self.answer(header, OK)
        elif msg_id == REGISTER:
            self.stats.inc("registrations")
            code = self.listener.auth_code(header.phone)
            self.send(registration_response(header, OK, code, self._next_serial()))
        elif msg_id == AUTH:
            self._authenticate(header, body, raw)
        elif msg_id == LOGOUT:
            self.answer(header, OK)
            raise Close
        else:
            self.stats.inc("unsupported")
            self.answer(header, NOT_SUPPORTED)

    def _authenticate(self, header: Header, body: bytes, raw: bytes) -> None:
        code = body[1 : 1 + body[0]] if header.version is not None and body else body
        expected = self.listener.auth_code(header.phone).encode()
        if hmac.compare_digest(code.rstrip(b"\0"), expected):
            self.authed = True
            self.stats.inc("authenticated")
            self.answer(header, OK)
        else:
            self.dead(self.topic(header), "bad_auth_code", "the auth code 0x8100 gave differs", raw)
            self.answer(header, FAILED)

    def _locations(self, header: Header, body: bytes, raw: bytes, device: Device) -> None:
        """Hand the reports to the journal writer, which decodes them (keeping this loop free
        for the sockets), commits them, and only then has them answered."""
        received = datetime.now(UTC)
        topic = self.topic(header)
        config = self.config
        stats = self.stats

        def prepare() -> tuple[list[Reading], list[DeadLetter]]:
            readings, dead, count = decode_reports(
                header, body, raw, device, config, received, topic
            )
            stats.inc("reports", count)
            return readings, dead

        def done(job: Job) -> None:
            result = OK if job.readings or not job.dead else MESSAGE_ERROR
            self._loop.call_soon_threadsafe(self._acked, header, result)

        self.listener.journal_writer.submit(Job([], [], done, prepare))

    def _acked(self, header: Header, result: int) -> None:
        self.answer(header, result)
        self.stats.inc("acks")


def decode_reports(
    header: Header,
    body: bytes,
    raw: bytes,
    device: Device,
    config: SiteConfig,
    received: datetime,
    topic: str,
) -> tuple[list[Reading], list[DeadLetter], int]:
    """A 0x0200 or 0x0704 body → its readings and the dead letters of what cannot be read (a
    bad batch item alone, keyed so a resent batch stores it once), and how many reports."""
    readings: list[Reading] = []
    dead: list[DeadLetter] = []
    limit = config.ingest.dead_letter_payload_bytes
    try:
        bodies = [body] if header.msg_id == LOCATION else split_batch(body)[1]
    except FrameError as exc:
        dead.append(DeadLetter.of(topic, raw, exc.reason, exc.detail, received, limit))
        return readings, dead, 0
    for index, item in enumerate(bodies):
        try:
            loc = decode_location(item)
            readings.append(to_reading(loc, item, device, config, received))
        except FrameError as exc:
            key = f"{topic}/{item.hex()[:64]}/{index}"
            detail = exc.detail if len(bodies) == 1 else f"item {index}: {exc.detail}"
            dead.append(DeadLetter.of(topic, item, exc.reason, detail, received, limit, key))
    return readings, dead, len(bodies)
