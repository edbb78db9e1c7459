"""Running the app under uvicorn with connection timeouts, and saying where it listens.

uvicorn closes idle keep-alive connections (``idle_timeout``) but waits forever for a request's headers; the
protocol here also closes a connection whose next request's headers have not arrived ``header_timeout`` seconds
after it opened or after its previous response. (A body that does not arrive is the app's ``body_timeout_s``.)
"""
from __future__ import annotations

import socket
from typing import Any, Callable


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or an OSError whose message says what to do."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"--host {host!r} is not an address of this machine ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        hint = "; choose another --port" if e.errno in (98, 48, 10048) else ""
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def timed_protocol(header_timeout: float) -> type:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with a header timeout."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - httptools comes with the serve extra
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class TimedProtocol(base):
        _header_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            cycle = self.cycle
            self._header_timer = self.loop.call_later(header_timeout, self._expire, cycle)

        def _expire(self, cycle) -> None:
            between = cycle is None or getattr(cycle, "response_complete", True)
            if self.cycle is cycle and between and not self.transport.is_closing():
                self.transport.close()  # no complete request headers arrived in time

    return TimedProtocol


def run(app: Any, sock: socket.socket, *, header_timeout: float = 10.0, idle_timeout: float = 5.0,
        log_level: str = "warning", on_ready: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on the bound ``sock`` until interrupted; ``on_ready()`` runs once it accepts connections."""
    import uvicorn

    config = uvicorn.Config(app, http=timed_protocol(header_timeout), timeout_keep_alive=idle_timeout,
                            log_level=log_level, loop="auto")

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started and on_ready is not None:
                on_ready()

    Server(config).run(sockets=[sock])
