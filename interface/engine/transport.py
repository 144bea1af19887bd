"""MLLP over Twisted: the protocol speaks the wire, the engine decides.

One message in flight per connection: frames that arrive while one is being stored wait in a
short queue, and when that queue is full the socket stops being read (``pauseProducing``) until
the ACK goes out — so a fast sender or a slow database means slower ACKs, never unbounded memory.
The connection stays open after each ACK. Limits per channel: frame size (past it the connection
is closed and the event recorded), idle timeout, connection count, sender allowlist.

Slow and greedy senders (``Limits``): the idle timer is reset by every byte, so it alone lets a
sender that trickles one byte every few seconds hold a connection forever. So a frame, once its
start block is read, must end within ``frame_timeout_seconds`` and keep arriving at
``min_receive_rate`` bytes/s over each ``receive_rate_window_seconds`` (neither counts while we
are the ones not reading: the socket paused, a message being stored); an address may hold
``max_connections_per_peer`` connections; and the bytes held in all the channel's partial frames
are capped (``Limits.partial_cap``): the connection whose bytes would pass it is closed. Each
cut is an event (``frame_timeout``, ``slow_sender``, ``too_many_connections_from_peer``,
``partial_bytes_cap``).

The ACK is written only when the handler's Deferred fires, and the handler (the group-commit
writer) fires it only after the journal transaction committed. A frame that held several messages
without a batch header is answered with one ACK frame per message, in order (``Outcome.frames``).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import TimeoutMixin

from interface.config.channels import Channel
from interface.engine.controls import NO_CONTROLS
from interface.engine.outcome import Outcome
from interface.hl7.errors import FrameTooLarge
from interface.hl7.framing import FrameDecoder, frame

log = logging.getLogger("interface.engine.transport")

MAX_QUEUED_FRAMES = 4  # pipelined frames kept per connection before the socket is paused

Handler = Callable[[bytes, str], Deferred]  # (frame, peer) -> Deferred[Outcome]
EventSink = Callable[..., None]  # record_event(kind=, channel=, peer=, detail=)


class MLLPProtocol(Protocol, TimeoutMixin):
    def __init__(self, factory: "MLLPFactory"):
        self.factory = factory
        self.decoder = FrameDecoder(factory.channel.limits.max_frame_bytes)
        self.pending: deque[bytes] = deque()
        self.busy = False
        self.paused = False
        self.closed = False
        self.counted = False
        self.peer = ""
        self.host = ""
        self.held = 0  # bytes of a partial frame counted in factory.partial_bytes
        self.frame_timer = None  # the deadline of the partial frame
        self.rate_timer = None  # the next receive-rate check of the partial frame
        self.window_bytes = 0  # bytes received since the last rate check

    # -- connection ---------------------------------------------------------------------------

    def connectionMade(self) -> None:
        p = self.transport.getPeer()
        host = getattr(p, "host", "") or ""
        self.peer = f"{host}:{getattr(p, 'port', '')}" if host else str(p)
        ch = self.factory.channel
        if host and not self.factory.allows(host):
            self.factory.event("refused_peer", self.peer, "address not in the channel allowlist")
            self.closed = True
            self.transport.abortConnection()
            return
        if self.factory.controls.all_paused(self.factory.channels):  # engine.controls: refused
            self.factory.event("refused_paused", self.peer, "channel paused")
            self.closed = True
            self.transport.abortConnection()
            return
        if self.factory.connections >= ch.limits.max_connections:
            self.factory.event(
                "too_many_connections", self.peer, f"limit {ch.limits.max_connections} reached"
            )
            self.closed = True
            self.transport.abortConnection()
            return
        if self.factory.per_peer.get(host, 0) >= ch.limits.max_connections_per_peer:
            self.factory.event(
                "too_many_connections_from_peer",
                self.peer,
                f"limit {ch.limits.max_connections_per_peer} per address reached",
            )
            self.closed = True
            self.transport.abortConnection()
            return
        self.factory.connections += 1
        self.host = host
        self.factory.per_peer[host] = self.factory.per_peer.get(host, 0) + 1
        self.counted = True
        self.factory.protocols.add(self)
        if self.factory.draining:  # accepted just before the listener stopped (reload)
            self.closed = True
            self.transport.loseConnection()
            return
        self.callLater = self.factory.clock.callLater  # TimeoutMixin uses this: injectable clock
        self.setTimeout(ch.limits.idle_timeout_seconds)
        log.info("channel=%s connection from %s", ch.name, self.peer)

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        self.setTimeout(None)
        self._frame_over()
        self._account(0)
        if self.counted:
            self.factory.connections -= 1
            n = self.factory.per_peer.get(self.host, 1) - 1
            if n > 0:
                self.factory.per_peer[self.host] = n
            else:
                self.factory.per_peer.pop(self.host, None)
            self.counted = False
        self.factory.protocols.discard(self)
        self.pending.clear()

    def timeoutConnection(self) -> None:
        if self.busy:  # a message is being stored: its ACK is due, don't cut it off
            # The mixin dropped its timer before calling us (resetTimeout would be a no-op and
            # the connection would never time out again): arm a new one.
            self.setTimeout(self.factory.channel.limits.idle_timeout_seconds)
            return
        self.factory.event("idle_timeout", self.peer, None)
        self.transport.loseConnection()

    # -- bytes in -----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        self.resetTimeout()
        self.window_bytes += len(data)
        try:
            frames = self.decoder.feed(data)
        except FrameTooLarge as exc:
            self._cut("frame_too_large", str(exc))
            return
        self._account(self.decoder.buffered)
        if self.factory.partial_bytes > self.factory.channel.limits.partial_cap:
            self._cut(
                "partial_bytes_cap",
                f"partial frames of the channel past {self.factory.channel.limits.partial_cap} bytes",
            )
            return
        if not self.decoder.in_frame:
            self._frame_over()
        elif frames or self.frame_timer is None:  # a new frame started
            self._frame_started()
        if frames:
            self.pending.extend(frames)
            if len(self.pending) >= MAX_QUEUED_FRAMES and not self.paused:
                self.paused = True
                self.transport.pauseProducing()
            self._next()

    # -- slow and greedy senders --------------------------------------------------------------

    def _account(self, held: int) -> None:
        """Keep the channel's count of bytes held in partial frames."""
        self.factory.partial_bytes += held - self.held
        self.held = held

    def _cut(self, kind: str, detail: str | None) -> None:
        self.factory.event(kind, self.peer, detail)
        self.closed = True
        self.pending.clear()
        self._frame_over()
        self.decoder = FrameDecoder(self.factory.channel.limits.max_frame_bytes)  # free the partial
        self._account(0)
        self.transport.abortConnection()

    def _frame_started(self) -> None:
        self._frame_over()
        limits = self.factory.channel.limits
        clock = self.factory.clock
        self.frame_timer = clock.callLater(limits.frame_timeout_seconds, self._frame_expired)
        self.window_bytes = 0
        if limits.min_receive_rate:
            self.rate_timer = clock.callLater(limits.receive_rate_window_seconds, self._rate_check)

    def _frame_over(self) -> None:
        for name in ("frame_timer", "rate_timer"):
            timer = getattr(self, name)
            if timer is not None and timer.active():
                timer.cancel()
            setattr(self, name, None)

    def _reading(self) -> bool:
        """We are reading the socket (not paused for a full queue): a slow frame is the sender's."""
        return not self.paused

    def _frame_expired(self) -> None:
        self.frame_timer = None
        if self.closed:
            return
        limits = self.factory.channel.limits
        if not self._reading():  # we stopped reading: the sender cannot finish; wait again
            self.frame_timer = self.factory.clock.callLater(limits.frame_timeout_seconds, self._frame_expired)
            return
        self._cut("frame_timeout", f"frame not complete within {limits.frame_timeout_seconds:g} s")

    def _rate_check(self) -> None:
        self.rate_timer = None
        if self.closed or not self.decoder.in_frame:
            return
        limits = self.factory.channel.limits
        need = limits.min_receive_rate * limits.receive_rate_window_seconds
        if self._reading() and self.window_bytes < need:
            self._cut(
                "slow_sender",
                f"{self.window_bytes} bytes in {limits.receive_rate_window_seconds:g} s, "
                f"below {limits.min_receive_rate} bytes/s",
            )
            return
        self.window_bytes = 0
        self.rate_timer = self.factory.clock.callLater(limits.receive_rate_window_seconds, self._rate_check)

    def _next(self) -> None:
        if self.busy or self.closed or not self.pending:
            return
        data = self.pending.popleft()
        self.busy = True
        d = self.factory.handler(data, self.peer)
        d.addCallbacks(self._answer, self._failed)
        d.addBoth(self._finished)

    # -- ACK out ------------------------------------------------------------------------------

    def _answer(self, outcome: Outcome) -> None:
        log.info(
            "channel=%s control_id=%s type=%s outcome=%s ack=%s",
            self.factory.channel.name,
            outcome.control_id,
            outcome.message_type,
            outcome.status,
            outcome.ack_code,
        )
        if not self.closed:  # one frame per ACK: several when the frame held several messages
            for data in outcome.frames:
                self.transport.write(frame(data))

    def _failed(self, failure) -> None:
        # Nothing was committed and we cannot say why in an ACK: close, the sender resends.
        log.error("channel=%s receive failed: %s", self.factory.channel.name, failure.getErrorMessage())
        if not self.closed:
            self.closed = True
            self.transport.abortConnection()

    def _finished(self, _) -> None:
        self.busy = False
        if self.closed:
            return
        self.resetTimeout()
        if self.paused and len(self.pending) < MAX_QUEUED_FRAMES:
            self.paused = False
            self.transport.resumeProducing()
        self._next()
        if self.factory.draining and not self.busy:  # reload: close once the ACK is out
            self.closed = True
            self.transport.loseConnection()


class MLLPFactory(Factory):
    protocol = MLLPProtocol

    def __init__(
        self,
        channel: Channel,
        handler: Handler,
        *,
        event_sink: EventSink | None = None,
        clock=None,
        channels: list[Channel] | None = None,
    ):
        from twisted.internet import reactor

        self.channel = channel  # the listener's settings (limits, tls): the first channel's
        self.channels = channels or [channel]  # every channel on this endpoint (interface.config.routing)
        self.handler = handler
        self.event_sink = event_sink
        self.clock = clock or reactor
        self.connections = 0
        self.per_peer: dict[str, int] = {}  # open connections per sender address
        self.partial_bytes = 0  # bytes held in partial frames, all connections
        self.protocols: set[MLLPProtocol] = set()
        self.draining = False
        self.controls = NO_CONTROLS  # what is paused (interface.engine.controls), set by ops

    def drain(self) -> None:
        """Config reload: close every connection once its in-flight message has been answered
        (idle ones now); frames already read are answered first. The listener is stopped by
        the caller."""
        self.draining = True
        for p in list(self.protocols):
            if not p.busy and not p.closed:
                p.closed = True
                p.pending.clear()
                p.transport.loseConnection()

    def buildProtocol(self, addr):
        return MLLPProtocol(self)

    def allows(self, host: str) -> bool:
        """A sender address is let in if any channel on the endpoint allows it."""
        return any(ch.allows(host) for ch in self.channels)

    def event(self, kind: str, peer: str, detail: str | None) -> None:
        log.warning("channel=%s event=%s peer=%s", self.channel.name, kind, peer)
        if self.event_sink is not None:
            try:
                self.event_sink(kind=kind, channel=self.channel.name, peer=peer, detail=detail)
            except Exception:
                log.exception("could not record event %s", kind)


def tls_context(channel: Channel):
    """A server TLS context for a channel's ``tls:`` block (client certificates if ``client_ca``)."""
    from interface.engine import tls_stack

    tls_stack.enable()  # a process without a TLS channel never imports it (engine.tls_stack)
    from twisted.internet import ssl

    tls = channel.tls
    with open(tls.cert, "rb") as f:
        cert_pem = f.read()
    with open(tls.key, "rb") as f:
        key_pem = f.read()
    pc = ssl.PrivateCertificate.loadPEM(key_pem + b"\n" + cert_pem)
    kwargs = {}
    if tls.client_ca:
        with open(tls.client_ca, "rb") as f:
            ca = ssl.Certificate.loadPEM(f.read())
        kwargs = dict(verify=True, caCerts=[ca.original], requireCertificate=tls.require_client_cert)
    return ssl.CertificateOptions(
        privateKey=pc.privateKey.original,
        certificate=pc.original,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        **kwargs,
    )


def bind_description(channel: Channel, desc: str | None = None) -> str:
    """The endpoint string to bind for a channel (``desc`` overrides ``channel.listen``).

    With a ``tls:`` block the TLS layer is ours (:func:`listening_factory`: client certificates,
    minimum version), so ``ssl:PORT:interface=H`` is bound as ``tcp:PORT:interface=H`` (its own
    key/certificate options are dropped) rather than wrapping TLS twice. Without a ``tls:`` block an
    ``ssl:`` string goes to Twisted as written (``privateKey=``, ``certKey=``)."""
    desc = desc or channel.listen
    if channel.tls is not None and desc.startswith("ssl:"):
        parts = desc.split(":")
        keep = [p for p in parts[2:] if p.split("=", 1)[0] in ("interface", "backlog")]
        return ":".join(["tcp", parts[1], *keep])
    return desc


def listening_factory(channel: Channel, factory: MLLPFactory):
    """Wrap the factory in TLS when the channel has a ``tls:`` block."""
    if channel.tls is None:
        return factory
    from twisted.protocols.tls import TLSMemoryBIOFactory

    return TLSMemoryBIOFactory(tls_context(channel), False, factory)
