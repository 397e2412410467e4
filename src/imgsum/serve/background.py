"""Runs the app on a real uvicorn server in a background thread: for tests, benchmarks and screenshots."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

LOOPBACK = "127.0.0.1"


class BackgroundServer:
    """``with BackgroundServer(create_app(settings)) as server: httpx.get(server.url + "/healthz")``.

    Binds 127.0.0.1 on a free port (or ``port``); the models load (the app's lifespan) before ``__enter__`` returns.
    """

    def __init__(self, app, port: int = 0, log_level: str = "warning", start_timeout_s: float = 120.0) -> None:
        self.app = app
        self.port = port
        self.log_level = log_level
        self.start_timeout_s = start_timeout_s
        self.url = ""
        self._server = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "BackgroundServer":
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, self.port))
        self.port = sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level=self.log_level, lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="imgsum-server",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the server on {self.url} did not start (see its log)")
            time.sleep(0.02)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
