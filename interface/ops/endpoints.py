"""Listening sockets shared by a cluster: bound once by the supervisor from an
endpoint string and adopted by each child.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger("interface.ops.cluster")


def _split_endpoint(desc: str) -> list[str]:
    """Split a Twisted endpoint string on unescaped colons (``\\:`` escapes one)."""
    parts, cur, i = [], [], 0
    while i < len(desc):
        ch = desc[i]
        if ch == "\\" and i + 1 < len(desc):
            cur.append(desc[i + 1])
            i += 2
            continue
        if ch == ":":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def bind_endpoint(desc: str) -> socket.socket:
    """Bind and listen like Twisted's ``tcp:PORT:interface=H:backlog=N`` / ``tcp6:`` would, in a
    socket the children can inherit. Other endpoint types cannot be shared this way."""
    from interface.hl7.errors import ConfigError

    parts = _split_endpoint(desc)
    kind = parts[0]
    if kind not in ("tcp", "tcp6") or len(parts) < 2:
        raise ConfigError(
            [
                f"listen {desc!r}: interface run --workers N can share tcp: and tcp6: endpoints only "
                f"(TLS is set with the channel's tls: block)"
            ]
        )
    kw = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    positional = [p for p in parts[1:] if "=" not in p]
    port = int(kw.get("port", positional[0] if positional else 0))
    family = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
    host = kw.get("interface", "::" if family == socket.AF_INET6 else "")
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(int(kw.get("backlog", 50)))
    sock.setblocking(False)  # the children's reactors need it non-blocking (shared file status)
    sock.set_inheritable(True)
    return sock


def server_endpoint(reactor, desc: str):
    """Twisted's ``serverFromString(reactor, desc)``, without importing Twisted's endpoint
    parsers for a plain ``tcp:PORT[:interface=H][:backlog=N]`` (or ``tcp6:``): that module imports
    pyOpenSSL and cryptography (``interface.engine.tls_stack``). Any other string goes to Twisted's
    parser as written, its TLS stack enabled first."""
    parts = _split_endpoint(desc)
    kw = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    plain = (
        parts[0] in ("tcp", "tcp6")
        and len(parts) == 2 + len(kw)
        and "=" not in parts[1]
        and parts[1].isdigit()
        and set(kw) <= {"interface", "backlog"}
        and kw.get("backlog", "50").isdigit()
    )
    if plain:
        default = "::" if parts[0] == "tcp6" else ""
        return _TCPServerEndpoint(
            reactor, int(parts[1]), int(kw.get("backlog", 50)), kw.get("interface", default)
        )
    from twisted.internet import endpoints

    from interface.engine import tls_stack

    tls_stack.enable()
    return endpoints.serverFromString(reactor, desc)


class _TCPServerEndpoint:
    """What ``TCP4ServerEndpoint``/``TCP6ServerEndpoint`` do: ``reactor.listenTCP``."""

    def __init__(self, reactor, port: int, backlog: int, interface: str):
        self.reactor, self.port, self.backlog, self.interface = reactor, port, backlog, interface

    def listen(self, factory):
        from twisted.internet import defer

        return defer.execute(
            self.reactor.listenTCP, self.port, factory, backlog=self.backlog, interface=self.interface
        )


class AdoptedEndpoint:
    """An IStreamServerEndpoint over a listening socket inherited from the supervisor."""

    def __init__(self, reactor, fd: int, family: int):
        self.reactor, self.fd, self.family = reactor, fd, family

    def listen(self, factory):
        from twisted.internet import defer

        try:
            port = self.reactor.adoptStreamPort(self.fd, self.family, factory)
        except Exception:
            return defer.fail()
        share_accepts(port, factory, self.reactor)
        return defer.succeed(port)


def share_accepts(port, factory, reactor, step: float = 0.005, most: float = 0.05) -> None:
    """Spread new connections over the children that share a listening socket.

    Every child waits on the same socket and the kernel wakes all of them for a new connection,
    but Twisted's ``Port`` accepts in a loop (up to ``numberAccepts``, which it grows under
    load): the first child to wake took every connection waiting — in the ADT benchmark all 16
    senders' connections, and the other processes sat idle. Here a child accepts one connection
    per wake-up, and a child that already serves ``k`` connections first steps back for
    ``5k`` ms (at most 50): a child with fewer connections takes it meanwhile, so the
    connections spread evenly without any state shared between the processes, and a sibling
    that is dead or stuck delays a connection by at most 50 ms. (1 ms steps were too short on a
    loaded machine: a sibling not scheduled for a few ms let one child take most connections.) MLLP connections live for
    hours, so the spread at connect time is the spread of the work."""
    read = port.doRead
    waited = False

    def resume():
        nonlocal waited
        waited = True
        if port.connected:
            port.startReading()

    def do_read():
        nonlocal waited
        held = getattr(factory, "connections", 0)
        if held and not waited:
            port.stopReading()
            reactor.callLater(min(most, held * step), resume)
            return None
        waited = False
        port.numberAccepts = 1
        return read()

    port.doRead = do_read


# -- the supervisor -----------------------------------------------------------------------------
