"""The console's HTTP server: uvicorn on a socket bound before start (so a taken port is a
clear error at start-up, and port 0 gets a free one), on its own thread beside the pipeline."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI


class ConsolePortError(OSError):
    """The console cannot listen where it was asked to (port taken, address not ours)."""


class ConsoleServer:
    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8088) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on accepted TCP sockets it knows as
        # such; without it every small response waited ~40 ms for the client's delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            where = f"console (pages, /api, /metrics, /healthz) on {host}:{port}"
            raise ConsolePortError(f"{where}: {exc.strerror or exc}") from None
        sock.listen(128)
        self._socket = sock
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=5
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sw-console", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self, wait_s: float = 10.0) -> ConsoleServer:
        self._thread.start()
        deadline = time.monotonic() + wait_s
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise ConsolePortError(f"console did not start within {wait_s:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
