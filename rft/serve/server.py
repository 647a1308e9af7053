"""Running an app under uvicorn: in the foreground for `rft serve`, or in a background thread for tests and
for processes that serve while they train (the socket is bound first, so port 0 picks a free port)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class Server:
    """uvicorn serving `app` on `host:port`; `base_url` is known as soon as it is constructed."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8000, *, verbose: bool = False) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family)
        config = uvicorn.Config(
            app, log_level="info" if verbose else "warning", access_log=verbose, lifespan="off"
        )
        self.uvicorn = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"

    def run(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C / SIGTERM)."""
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self, timeout: float = 30.0) -> Server:
        """Serve from a daemon thread; returns once the server accepts connections."""
        self.thread = threading.Thread(
            target=self.uvicorn.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.uvicorn.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.base_url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)
        self.socket.close()

    def __enter__(self) -> Server:  # noqa: PYI034 - Server is final
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
