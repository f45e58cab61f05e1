"""WebRTC ingest, WHIP style: a drone or body camera POSTs an SDP offer and sends its video.

`POST /whip/<device_id>` with `Content-Type: application/sdp` and `Authorization: Bearer
<token>` answers `201 Created` with the SDP answer and a `Location` for the session; `DELETE`
on that location hangs up. Received frames go to `on_frame(Frame)`, stamped on arrival. The
server binds to loopback unless told otherwise (put a TLS-terminating proxy in front to
expose it), runs aiohttp and aiortc on its own thread and event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from ingest.frames import Frame

log = logging.getLogger(__name__)

MAX_OFFER_BYTES = 64 * 1024


class WhipServer:
    def __init__(
        self,
        token: str,
        device_ids: Iterable[str],
        on_frame: Callable[[Frame], None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if len(token) < 16:
            raise ValueError("the WHIP token must be at least 16 characters")
        self.token = token
        self.device_ids = set(device_ids)
        self.on_frame = on_frame
        self.host = host
        self.port = port
        self.stats: Counter[str] = Counter()
        self._sessions: dict[str, RTCPeerConnection] = {}
        self._indices: Counter[str] = Counter()
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ---- life cycle (called from any thread) ------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._serve, name="whip", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("WHIP server did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/whip"

    # ---- server -----------------------------------------------------------------------------

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_site())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._loop = None  # nothing to stop: stop() must not wait on a loop that never ran
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _start_site(self) -> None:
        app = web.Application(client_max_size=MAX_OFFER_BYTES)
        app.router.add_post("/whip/{device_id}", self._offer)
        app.router.add_delete("/whip/{device_id}/{session}", self._hangup)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self._sessions.values()))
        self._sessions.clear()
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.encode(), self.token.encode()
        )

    async def _offer(self, request: web.Request) -> web.Response:
        device_id = request.match_info["device_id"]
        if not self._authorised(request):
            self.stats["unauthorised"] += 1
            return web.Response(status=401, text="missing or wrong bearer token\n")
        if device_id not in self.device_ids:
            self.stats["unknown_device"] += 1
            return web.Response(status=404, text=f"unknown device {device_id!r}\n")
        if request.content_type != "application/sdp":
            self.stats["bad_offer"] += 1
            return web.Response(status=415, text="expected Content-Type: application/sdp\n")
        sdp = await request.text()
        pc = RTCPeerConnection()
        session = uuid.uuid4().hex
        pc.on("track", lambda track: self._on_track(device_id, track))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError and friends on bad SDP
            self.stats["bad_offer"] += 1
            await pc.close()
            return web.Response(status=400, text=f"bad SDP offer: {exc}\n")
        self._sessions[session] = pc
        self.stats["sessions"] += 1
        return web.Response(
            status=201,
            content_type="application/sdp",
            text=pc.localDescription.sdp,
            headers={"Location": f"/whip/{device_id}/{session}"},
        )

    async def _hangup(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            self.stats["unauthorised"] += 1
            return web.Response(status=401)
        pc = self._sessions.pop(request.match_info["session"], None)
        if pc is None:
            return web.Response(status=404)
        await pc.close()
        return web.Response(status=200)

    def _on_track(self, device_id: str, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            task = asyncio.ensure_future(self._receive(device_id, track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _receive(self, device_id: str, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            image = frame.to_ndarray(format="bgr24")
            index = self._indices[device_id]
            self._indices[device_id] += 1
            self.stats["frames"] += 1
            try:
                self.on_frame(Frame(device_id, index, datetime.now(UTC), image))
            except Exception:
                self.stats["on_frame_errors"] += 1
                log.exception("%s: on_frame failed", device_id)
