"""uvicorn's HTTP/1.1 protocol with ``TCP_NODELAY`` on every accepted connection.

The sockets uvicorn is handed (``WebThread``) or opens (``interface web``) come without it, and
uvicorn writes a response's head and body as two sends: with Nagle's algorithm on, the body then
waits for the client's delayed ACK of the head — about 40 ms on Linux — on every request but the
first of a keep-alive connection (a FHIR client, the console's htmx calls, API scripts). Measured
with ``interface bench --scenarios fhir``: a Patient read went from 48 ms to its CPU time.
"""

from __future__ import annotations

import socket
from functools import cache


@cache
def protocol_class() -> type:
    """The class for ``uvicorn.Config(http=...)`` (built on first use: uvicorn is imported late):
    uvicorn's httptools protocol (the C parser: ~1 ms less CPU a request than h11's pure Python,
    measured with ``interface bench --scenarios fhir``), its h11 protocol where httptools is not
    installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools missing: the pure-Python parser
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]

    class NoDelayProtocol(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:  # a socket that is already gone: uvicorn sees it next
                    pass
            super().connection_made(transport)

    return NoDelayProtocol
