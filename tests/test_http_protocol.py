"""The console's HTTP server sets TCP_NODELAY on every connection it accepts
(``interface.web.http_protocol``): without it, each request after the first on a keep-alive
connection waited ~40 ms for the client's delayed ACK (uvicorn sends a response's head and body
separately)."""

from __future__ import annotations

import http.client
import socket

from fastapi import FastAPI

from interface.web.app import WebThread


def test_keep_alive_connections_are_served_with_tcp_nodelay():
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    web = WebThread(app, "127.0.0.1", 0)
    web.start()
    try:
        client = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
        for _ in range(2):  # the same keep-alive connection
            client.request("GET", "/ping")
            resp = client.getresponse()
            assert resp.status == 200 and resp.read() == b'{"ok":true}'
        connections = list(web._server.server_state.connections)
        assert connections, "the server holds the open connection"
        for proto in connections:
            assert type(proto).__mro__[1].__name__ == "HttpToolsProtocol"  # the C parser (a dependency)
            sock = proto.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        client.close()
    finally:
        web.stop()
