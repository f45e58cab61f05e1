"""The JT/T 808 listener: an asyncio TCP server in its own thread, beside the MQTT consumer.

Limits keep one terminal (or something pretending to be one) from disturbing the others: a
connection cap overall and per address (a flood is refused at accept), a frame that must end
within `frame_timeout_s` of its first byte (a slowloris connection is closed), a silent
connection closed after `idle_timeout_s`, an unauthenticated one after `auth_timeout_s`, a
frame longer than `max_frame_bytes` closes its connection. Each refusal is counted and
dead-lettered (refusals of one kind from one address at most once a minute in the journal).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ingest.config import SiteConfig
from ingest.config.jt808 import Jt808
from ingest.diskspace import DiskGuard
from ingest.journal import DeadLetter, Journal
from ingest.jt808.framing import FrameSplitter, Oversized
from ingest.jt808.message import Header
from ingest.jt808.session import Close, Session
from ingest.jt808.writer import Job, JournalWriter
from ingest.stats import IngestStats

log = logging.getLogger("streetwatch.jt808")

THROTTLE_S = 60.0
KEY_FILE = "jt808.key"


def load_auth_key(root: str | Path) -> bytes:
    """The box's secret for auth codes (0x8100), made once and kept beside the journal, so a
    registered terminal's code survives a restart."""
    path = Path(root) / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(os.urandom(32))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path.read_bytes()


class Jt808Listener:
    def __init__(
        self,
        config: SiteConfig,
        journal: Journal,
        *,
        auth_key: bytes,
        disk: DiskGuard | None = None,
        settings: Jt808 | None = None,
    ) -> None:
        self.config = config
        self.settings = settings or config.jt808 or Jt808()
        self.devices = config.jt808_devices()
        self.stats = IngestStats()
        self.journal_writer = JournalWriter(journal, self.stats, self.settings.batch_size, disk)
        self._key = auth_key
        self._open: Counter[str] = Counter()
        self._last_letter: dict[tuple[str, str], float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = self.settings.port

    # ---- life cycle ------------------------------------------------------------------------

    def start(self, wait_s: float = 10.0) -> None:
        self.journal_writer.start()
        self._thread = threading.Thread(target=self._run, name="sw-jt808", daemon=True)
        self._thread.start()
        if not self._ready.wait(wait_s):
            raise TimeoutError("the JT/T 808 listener did not start")
        if self._error is not None:
            raise OSError(
                f"JT/T 808 listener on {self.settings.host}:{self.settings.port}: {self._error}"
            ) from self._error
        log.info("JT/T 808 listener on %s:%d", self.settings.host, self.port)

    def stop(self, timeout_s: float = 10.0) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(self._shutdown.set)
            self._thread.join(timeout_s)
        self.journal_writer.stop(timeout_s)

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self.journal_writer.alive

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); logged when it happens later
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("JT/T 808 listener failed")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        self._server = await asyncio.start_server(
            self._serve, self.settings.host, self.settings.port, limit=2**20, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        async with self._server:
            await self._shutdown.wait()
            self._server.close()

    # ---- what sessions use -----------------------------------------------------------------

    def auth_code(self, phone: str) -> str:
        return hmac.new(self._key, phone.encode(), hashlib.sha256).hexdigest()[:16]

    def dead_letter(
        self, topic: str, reason: str, detail: str, payload: bytes, *, throttle: str = ""
    ) -> None:
        """Count it always; journal it (at most once a minute per `throttle` and reason when
        `throttle` names a source: a flood must not flood the journal)."""
        if throttle:
            loop_now = asyncio.get_running_loop().time()
            last = self._last_letter.get((throttle, reason))
            if last is not None and loop_now - last < THROTTLE_S:
                self.stats.dead_letter(reason)
                self.stats.inc("dead_letters_not_journaled")
                return
            self._last_letter[(throttle, reason)] = loop_now
            if len(self._last_letter) > 10_000:
                self._last_letter.clear()
        log.warning("jt808 dead letter on %s: %s: %s", topic, reason, detail)
        limit = self.config.ingest.dead_letter_payload_bytes
        letter = DeadLetter.of(topic, payload, reason, detail, datetime.now(UTC), limit)
        self.journal_writer.submit(Job([], [letter], None))

    def unknown_terminal(self, header: Header, raw: bytes, peer: str) -> None:
        self.dead_letter(
            f"jt808/{header.phone}/0x{header.msg_id:04x}",
            "unknown_terminal",
            f"terminal {header.phone} ({header.edition}, from {peer}) is not in devices.yaml",
            raw,
            throttle=header.phone,
        )

    # ---- connections -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_addr = writer.get_extra_info("peername") or ("?", 0)
        ip = str(peer_addr[0])
        total = sum(self._open.values())
        s = self.settings
        if total >= s.max_connections or self._open[ip] >= s.max_connections_per_ip:
            which = "all" if total >= s.max_connections else "this address's"
            self.stats.inc("refused_connections")
            self.dead_letter(
                f"jt808/{ip}",
                "connection_flood",
                f"{ip}: {which} connections at the limit ({total} open)",
                b"",
                throttle=ip,
            )
            writer.close()
            return
        self._open[ip] += 1
        self.stats.inc("connections")
        try:
            await self._session(reader, writer, f"{ip}:{peer_addr[1]}")
        except (ConnectionError, OSError):
            self.stats.inc("connection_errors")
        except Exception:
            log.exception("jt808 connection from %s failed", ip)
            self.stats.inc("connection_errors")
        finally:
            self._open[ip] -= 1
            if self._open[ip] <= 0:
                del self._open[ip]
            writer.close()

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        s = self.settings
        session = Session(self, writer, peer)
        splitter = FrameSplitter(s.max_frame_bytes)
        loop = asyncio.get_running_loop()
        opened = last_active = loop.time()
        frame_started = 0.0
        while not self._shutdown.is_set():
            now = loop.time()
            if splitter.partial:
                deadline, why = frame_started + s.frame_timeout_s, "slowloris"
            else:
                deadline, why = last_active + s.idle_timeout_s, "idle"
            if not session.authed and opened + s.auth_timeout_s < deadline:
                deadline, why = opened + s.auth_timeout_s, "auth_timeout"
            try:
                async with asyncio.timeout(max(0.0, deadline - now)):
                    data = await reader.read(65536)
            except TimeoutError:
                self._timed_out(why, session, peer, splitter)
                return
            if not data:
                return
            was_partial = splitter.partial
            pieces = splitter.feed(data)
            now = loop.time()
            if pieces:
                last_active = now
            if splitter.partial and (pieces or not was_partial):
                frame_started = now
            for piece in pieces:
                if isinstance(piece, Oversized):
                    self.dead_letter(
                        session.topic(),
                        "oversized",
                        f"a frame past {s.max_frame_bytes} bytes ({piece.size} so far)",
                        piece.head,
                    )
                    return
                try:
                    session.frame(piece)
                except Close:
                    await _drain(writer)
                    return
            await _drain(writer)

    def _timed_out(self, why: str, session: Session, peer: str, splitter: FrameSplitter) -> None:
        self.stats.inc(f"closed.{why}")
        if why == "idle":
            return
        who = session.device.id if session.device is not None else peer
        detail = {
            "slowloris": f"{who}: a frame begun and not ended within "
            f"{self.settings.frame_timeout_s:g} s",
            "auth_timeout": f"{who}: no authentication (0x0102) within "
            f"{self.settings.auth_timeout_s:g} s",
        }[why]
        self.dead_letter(session.topic(), why, detail, b"", throttle=peer.rpartition(":")[0])


async def _drain(writer: asyncio.StreamWriter) -> None:
    if writer.transport.get_write_buffer_size() > 65536:
        await writer.drain()
