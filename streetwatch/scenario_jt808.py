"""A JT/T 808 vehicle terminal simulator, written from the standard: registration, auth,
heartbeat, location reports and batch uploads over a real TCP connection, 2013 or 2019 header,
with sub-packages; it resends whatever was not acknowledged (a real terminal's blind-area
store), so a killed box loses nothing.

`jt808_reports` turns the seeded scenario's fixes of `protocol: jt808` devices into location
reports (a muck truck raises its dump body while it is off its route); `play` sends them, paced.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from detectors.geofence import Corridor, projection_for
from ingest.config import Device, SiteConfig
from ingest.config.jt808 import Protocol
from ingest.jt808.framing import FrameSplitter, Oversized, unwrap
from ingest.jt808.location import Location, dword, encode_location, join_batch, word
from ingest.jt808.message import MAX_BODY, Message, build, parse, phone_bcd
from streetwatch.scenario_context import SimMessage

ACC, POSITIONED, GPS, BEIDOU = 1 << 0, 1 << 1, 1 << 18, 1 << 19
EDITION_2019 = 1
"""The protocol version byte a 2019 terminal sends."""


class TerminalError(ConnectionError):
    pass


class Terminal:
    """One terminal on one TCP connection (blocking; one thread at a time)."""

    def __init__(
        self, host: str, port: int, phone: str, *, version: int | None = EDITION_2019
    ) -> None:
        self.host, self.port, self.phone, self.version = host, port, phone, version
        self.bcd = phone_bcd(phone, version)
        self.serial = 0
        self.sock: socket.socket | None = None
        self._splitter = FrameSplitter(1 << 20)
        self._inbox: list[Message] = []

    def connect(self, timeout_s: float = 10.0) -> Terminal:
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._splitter = FrameSplitter(1 << 20)
        self._inbox = []
        return self

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Terminal:
        return self.connect() if self.sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- wire ----------------------------------------------------------------------------

    def next_serial(self) -> int:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial

    def frame(self, msg_id: int, body: bytes, serial: int | None = None, **parts: int) -> bytes:
        serial = self.next_serial() if serial is None else serial
        return build(msg_id, body, phone_bcd=self.bcd, serial=serial, version=self.version, **parts)

    def send_raw(self, data: bytes) -> None:
        if self.sock is None:
            raise TerminalError("not connected")
        self.sock.sendall(data)

    def receive(self, timeout_s: float = 10.0) -> Message:
        """The next message from the platform."""
        if self.sock is None:
            raise TerminalError("not connected")
        deadline = time.monotonic() + timeout_s
        while not self._inbox:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from the platform")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise TerminalError("the platform closed the connection")
            for piece in self._splitter.feed(data):
                if not isinstance(piece, Oversized):
                    self._inbox.append(parse(unwrap(piece)))
        return self._inbox.pop(0)

    def reply_to(self, msg_id: int, serial: int, timeout_s: float = 10.0) -> Message:
        """The platform's reply to our message `serial` (0x8001/0x8100 carry it first)."""
        while True:
            message = self.receive(timeout_s)
            body = message.body
            if len(body) < 2 or int.from_bytes(body[:2], "big") != serial:
                continue
            if message.header.msg_id == 0x8100 or int.from_bytes(body[2:4], "big") == msg_id:
                return message

    def request(self, msg_id: int, body: bytes, timeout_s: float = 10.0) -> Message:
        serial = self.next_serial()
        self.send_raw(self.frame(msg_id, body, serial))
        return self.reply_to(msg_id, serial, timeout_s)

    # ---- messages ------------------------------------------------------------------------

    def register(self, plate: str = "沪B·Z0008") -> tuple[int, str]:
        """0x0100 → (result, auth code)."""
        if self.version is None:
            body = word(31) + word(100) + b"SWSIM" + b"JT808-SIM".ljust(20, b"\0")
            body += b"T000001" + bytes((2,)) + plate.encode("gbk")
        else:
            body = word(31) + word(100) + b"SWSIM".ljust(11, b"\0")
            body += b"JT808-SIM".ljust(30, b"\0") + b"T000001".ljust(30, b"\0")
            body += bytes((2,)) + plate.encode("gbk")
        reply = self.request(0x0100, body)
        result = reply.body[2]
        return result, reply.body[3:].decode("ascii", "replace")

    def authenticate(self, code: str) -> int:
        raw = code.encode("ascii")
        if self.version is None:
            body = raw
        else:
            body = bytes((len(raw),)) + raw + b"860000000000001" + b"sim-1.0".ljust(20, b"\0")
        return self.request(0x0102, body).body[4]

    def login(self) -> None:
        result, code = self.register()
        if result != 0:
            raise TerminalError(f"registration refused: result {result}")
        result = self.authenticate(code)
        if result != 0:
            raise TerminalError(f"authentication refused: result {result}")

    def heartbeat(self) -> int:
        return self.request(0x0002, b"").body[4]

    def report(self, loc: Location | bytes, timeout_s: float = 10.0) -> int:
        """0x0200; the 0x8001 result once the platform acknowledges it."""
        body = loc if isinstance(loc, bytes) else encode_location(loc)
        return self.request(0x0200, body, timeout_s).body[4]

    def batch(
        self, locs: Iterable[Location | bytes], kind: int = 0, timeout_s: float = 10.0
    ) -> int:
        """0x0704 (in sub-packages when it is longer than one body may be)."""
        items = [x if isinstance(x, bytes) else encode_location(x) for x in locs]
        body = join_batch(items, kind)
        if len(body) <= MAX_BODY:
            return self.request(0x0704, body, timeout_s).body[4]
        return self.split(0x0704, body, timeout_s)

    def split(self, msg_id: int, body: bytes, timeout_s: float = 10.0, size: int = 512) -> int:
        """Send `body` as sub-packages; the result of the reply to the last one."""
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        serials = [self.next_serial() for _ in chunks]
        for index, (serial, chunk) in enumerate(zip(serials, chunks, strict=True), 1):
            self.send_raw(self.frame(msg_id, chunk, serial, packages=len(chunks), index=index))
        return self.reply_to(msg_id, serials[-1], timeout_s).body[4]


def location(
    lat: float,
    lon: float,
    when: datetime,
    *,
    speed_kmh: float = 0.0,
    heading: int = 0,
    alarm: int = 0,
    status: int = ACC | POSITIONED | GPS | BEIDOU,
    altitude_m: int = 4,
    mileage_km: float | None = None,
    sats: int | None = None,
    signal: int | None = None,
    io: int | None = None,
) -> Location:
    items: dict[int, bytes] = {}
    if mileage_km is not None:
        items[0x01] = dword(round(mileage_km * 10))
    if io is not None:
        items[0x2A] = word(io)
    if signal is not None:
        items[0x30] = bytes((signal,))
    if sats is not None:
        items[0x31] = bytes((sats,))
    return Location(alarm, status, lat, lon, altitude_m, speed_kmh, heading, when, items)


# ---- the scenario's JT/T 808 trucks ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    at_s: float
    device_id: str
    location: Location


def jt808_reports(
    config: SiteConfig, messages: list[SimMessage]
) -> tuple[list[SimMessage], list[Report]]:
    """Split the scenario: the fixes of `protocol: jt808` devices become location reports (the
    rest stay MQTT messages). A truck with a `dump_raised` input and a route raises its dump
    body while it is off the route; overspeed sets the alarm bit over its speed limit."""
    devices = {
        config.default_topic(d.id, d.streams[0]): d
        for d in config.devices
        if d.protocol is Protocol.JT808
    }
    mqtt: list[SimMessage] = []
    reports: list[Report] = []
    mileage: dict[str, float] = {}
    for message in messages:
        device = devices.get(message.topic)
        if device is None or message.fault is not None:
            mqtt.append(message)
            continue
        fix = json.loads(message.payload)
        km = mileage[device.id] = mileage.get(device.id, 1234.5) + fix["speed_kmh"] / 3600
        io = _inputs(device, fix["lat"], fix["lon"])
        limit = device.speed_limit_kmh
        alarm = 0b10 if limit is not None and fix["speed_kmh"] > limit else 0
        when = datetime.fromisoformat(fix["ts"]).astimezone(UTC)
        loc = location(
            fix["lat"],
            fix["lon"],
            when,
            speed_kmh=round(fix["speed_kmh"], 1),
            heading=round(fix["heading"]) % 360,
            alarm=alarm,
            mileage_km=km,
            sats=fix["sats"],
            signal=24,
            io=io,
        )
        reports.append(Report(message.at_s, device.id, loc))
    return mqtt, reports


def _inputs(device: Device, lat: float, lon: float) -> int | None:
    where = device.inputs.get("dump_raised")
    if where is None or not where.startswith("io:") or device.route is None:
        return 0 if device.inputs else None
    projection = projection_for(device.zones, device.route)
    if projection is None:
        return 0
    corridor = _corridor(device, projection)
    off = not corridor.contains(projection.xy(lon, lat))
    return (1 << int(where[3:])) if off else 0


_CORRIDORS: dict[str, Corridor] = {}


def _corridor(device: Device, projection) -> Corridor:
    corridor = _CORRIDORS.get(device.id)
    if corridor is None or corridor.route != device.route:
        corridor = _CORRIDORS[device.id] = Corridor(device.route, projection)  # type: ignore[arg-type]
    return corridor


@dataclass(slots=True)
class PlayReport:
    sent: int = 0
    acked: int = 0
    refused: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


def play(
    config: SiteConfig,
    reports: list[Report],
    *,
    host: str,
    port: int,
    speed: float,
    stop: threading.Event,
    started: float | None = None,
    give_up_s: float = 60.0,
) -> PlayReport:
    """Send each device's reports at their scenario times (one thread per terminal); a report
    not acknowledged is sent again after a reconnect, as a terminal does. A terminal that gets
    no acknowledgement for `give_up_s` stops (its error is in the report)."""
    started = time.monotonic() if started is None else started
    out = PlayReport()
    lock = threading.Lock()
    by_device: dict[str, list[Report]] = {}
    for report in reports:
        by_device.setdefault(report.device_id, []).append(report)

    def drive(device: Device, mine: list[Report]) -> None:
        assert device.phone is not None
        terminal = Terminal(host, port, device.phone)
        pending = list(mine)
        progress = time.monotonic()
        while pending and not stop.is_set():
            if time.monotonic() - progress > give_up_s:
                with lock:
                    out.errors.insert(0, f"{device.id}: gave up after {give_up_s:g} s")
                break
            try:
                if terminal.sock is None:
                    terminal.connect()
                    terminal.login()
                report = pending[0]
                wait = started + report.at_s / speed - time.monotonic()
                if wait > 0:
                    if stop.wait(wait):
                        break
                    progress = time.monotonic()
                with lock:
                    out.sent += 1
                result = terminal.report(report.location)
                pending.pop(0)  # answered: a refusal (result 2) is not sent again
                progress = time.monotonic()
                with lock:
                    if result == 0:
                        out.acked += 1
                    else:
                        out.refused += 1
            except (OSError, TimeoutError, ValueError) as exc:
                terminal.close()
                with lock:
                    out.reconnects += 1
                    if len(out.errors) < 10:
                        out.errors.append(f"{device.id}: {exc}")
                stop.wait(1.0)
        terminal.close()

    threads = [
        threading.Thread(target=drive, args=(config.device(d), mine), daemon=True)
        for d, mine in by_device.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def connect_host(host: str) -> str:
    """Where a local client reaches a listener bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class Player:
    """`play` in a background thread, beside the MQTT publisher (simulate, the demo)."""

    def __init__(
        self,
        config: SiteConfig,
        reports: list[Report],
        *,
        speed: float,
        stop: threading.Event,
        address: tuple[str, int] | None = None,
    ) -> None:
        if address is None:
            settings = config.jt808
            if settings is None:
                raise ValueError("JT/T 808 devices but no `jt808:` section to send to")
            address = (connect_host(settings.host), settings.port)
        self.address = address
        self.result = PlayReport()
        self._thread = threading.Thread(
            target=self._run, args=(config, reports, speed, stop), name="jt808-sim", daemon=True
        )
        self.total = len(reports)

    def _run(
        self, config: SiteConfig, reports: list[Report], speed: float, stop: threading.Event
    ) -> None:
        host, port = self.address
        self.result = play(config, reports, host=host, port=port, speed=speed, stop=stop)

    def start(self) -> Player:
        self._thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> PlayReport:
        self._thread.join(timeout_s)
        return self.result

    def summary(self) -> str:
        r = self.result
        host, port = self.address
        return (
            f"jt808: sent {r.sent} location reports to {host}:{port}, {r.acked}/{self.total}"
            f" acknowledged, {r.reconnects} reconnects"
            + (f" (first error: {r.errors[0]})" if r.errors else "")
        )
