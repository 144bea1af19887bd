"""The MLLP protocol with StringTransport and task.Clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import StringTransport

from interface.config.channels import Channel
from interface.engine.outcome import Outcome
from interface.engine.transport import MAX_QUEUED_FRAMES, MLLPFactory
from interface.hl7.framing import FrameDecoder, frame


def channel(**kw) -> Channel:
    base = dict(name="adt", listen="tcp:0:interface=127.0.0.1", accept=["ADT^*"])
    base.update(kw)
    return Channel.model_validate(base)


def msg(ctl: str) -> bytes:
    return f"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|{ctl}|P|2.5\rPID|1\r".encode()


def ack_for(data: bytes) -> bytes:
    ctl = data.split(b"\r")[0].split(b"|")[9]
    return b"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5\rMSA|AA|" + ctl + b"\r"


class Harness:
    """A factory with a controllable handler: each frame's Deferred is fired by the test."""

    def __init__(self, ch: Channel | None = None):
        self.clock = task.Clock()
        self.events: list[dict] = []
        self.calls: list[tuple[bytes, str, Deferred]] = []
        self.factory = MLLPFactory(ch or channel(), self.handler, event_sink=self.record, clock=self.clock)

    def handler(self, data: bytes, peer: str) -> Deferred:
        d: Deferred = Deferred()
        self.calls.append((data, peer, d))
        return d

    def record(self, **kw) -> None:
        self.events.append(kw)

    def connect(self, host: str = "127.0.0.1", port: int = 40000):
        proto = self.factory.buildProtocol(IPv4Address("TCP", host, port))
        tr = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        proto.makeConnection(tr)
        return proto, tr

    def answer(self, i: int) -> None:
        data, _, d = self.calls[i]
        d.callback(Outcome("accepted", ack_for(data), "AA", "x", "ADT^A01", 1))


def acks(tr: StringTransport) -> list[bytes]:
    return FrameDecoder().feed(tr.value())


def test_one_message_in_flight_per_connection():
    """Pipelined frames are handed over one at a time: the next only after the previous ACK."""
    h = Harness()
    proto, tr = h.connect()
    proto.dataReceived(frame(msg("1")) + frame(msg("2")) + frame(msg("3")))
    assert len(h.calls) == 1 and h.calls[0][0] == msg("1")
    assert tr.value() == b""
    h.answer(0)
    assert acks(tr) == [ack_for(msg("1"))]
    assert len(h.calls) == 2
    h.answer(1)
    h.answer(2)
    assert acks(tr) == [ack_for(msg(c)) for c in "123"]


def test_ack_written_only_when_handler_fires_and_connection_stays_open():
    h = Harness()
    proto, tr = h.connect()
    proto.dataReceived(frame(msg("1"))[:10])
    assert h.calls == []
    proto.dataReceived(frame(msg("1"))[10:])
    assert tr.value() == b""
    h.answer(0)
    assert acks(tr) == [ack_for(msg("1"))]
    assert not tr.disconnecting
    proto.dataReceived(frame(msg("2")))
    h.answer(1)
    assert len(acks(tr)) == 2 and not tr.disconnecting
    assert h.calls[0][1] == "127.0.0.1:40000"


def test_no_ack_when_outcome_has_none():
    """MSH-15 NE: nothing written, the connection continues."""
    h = Harness()
    proto, tr = h.connect()
    proto.dataReceived(frame(msg("1")) + frame(msg("2")))
    h.calls[0][2].callback(Outcome("accepted", None, None))
    assert tr.value() == b"" and len(h.calls) == 2


def test_handler_failure_closes_connection_without_ack():
    """Nothing committed and no ACK to say so: the connection is closed; the sender resends."""
    h = Harness()
    proto, tr = h.connect()
    proto.dataReceived(frame(msg("1")) + frame(msg("2")))
    h.calls[0][2].errback(RuntimeError("receive failed"))
    assert tr.value() == b"" and tr.disconnecting
    assert len(h.calls) == 1


def test_idle_timeout_closes_and_records():
    h = Harness(channel(limits={"idle_timeout_seconds": 30}))
    proto, tr = h.connect()
    h.clock.advance(29)
    proto.dataReceived(b"\r\n")  # any bytes count as activity
    h.clock.advance(29)
    assert not tr.disconnecting
    h.clock.advance(2)
    assert tr.disconnecting
    assert [e["kind"] for e in h.events] == ["idle_timeout"]


def test_idle_timeout_waits_for_message_being_stored():
    """A slow commit is not idleness: the ACK still goes out."""
    h = Harness(channel(limits={"idle_timeout_seconds": 30}))
    proto, tr = h.connect()
    proto.dataReceived(frame(msg("1")))
    h.clock.advance(100)
    assert not tr.disconnecting
    h.answer(0)
    assert acks(tr) == [ack_for(msg("1"))]
    h.clock.advance(31)
    assert tr.disconnecting


def test_connection_lost_stops_timer_and_ack():
    h = Harness(channel(limits={"idle_timeout_seconds": 30}))
    proto, tr = h.connect()
    proto.dataReceived(frame(msg("1")) + frame(msg("2")))
    proto.connectionLost(None)
    assert h.factory.connections == 0
    assert h.clock.getDelayedCalls() == []
    h.answer(0)  # the commit finishes after the sender went away
    assert tr.value() == b"" and len(h.calls) == 1


def test_max_connections_refused_and_recorded():
    h = Harness(channel(limits={"max_connections": 2}))
    (p1, t1), (p2, t2) = h.connect(port=1), h.connect(port=2)
    p3, t3 = h.connect(port=3)
    assert not t1.disconnecting and not t2.disconnecting and t3.disconnecting
    assert h.factory.connections == 2
    assert [e["kind"] for e in h.events] == ["too_many_connections"]
    p3.dataReceived(frame(msg("x")))
    assert h.calls == []
    p3.connectionLost(None)
    assert h.factory.connections == 2
    p1.connectionLost(None)
    p4, t4 = h.connect(port=4)
    assert not t4.disconnecting and h.factory.connections == 2


@pytest.mark.parametrize(
    "host,allowed", [("10.1.2.3", True), ("10.9.9.9", False), ("192.168.0.7", True), ("127.0.0.1", False)]
)
def test_allowlist(host, allowed):
    h = Harness(channel(allow=["10.1.2.0/24", "192.168.0.7"]))
    proto, tr = h.connect(host=host)
    assert tr.disconnecting is (not allowed)
    if allowed:
        assert h.events == [] and h.factory.connections == 1
    else:
        assert h.events[0]["kind"] == "refused_peer" and h.events[0]["peer"] == f"{host}:40000"
        assert h.events[0]["channel"] == "adt"
        proto.dataReceived(frame(msg("1")))
        assert h.calls == [] and h.factory.connections == 0


def test_frame_too_large_recorded_and_closed():
    h = Harness(channel(limits={"max_frame_bytes": 1024}))
    proto, tr = h.connect()
    proto.dataReceived(b"\x0b" + b"A" * 600)
    assert not tr.disconnecting
    proto.dataReceived(b"A" * 600)
    assert tr.disconnecting
    assert [e["kind"] for e in h.events] == ["frame_too_large"]
    assert proto.decoder.buffered == 0
    proto.dataReceived(frame(msg("1")))
    assert h.calls == [] and tr.value() == b""


def test_pause_and_resume_backpressure():
    """Past MAX_QUEUED_FRAMES waiting frames the socket is paused; it resumes as ACKs go out."""
    h = Harness()
    proto, tr = h.connect()
    n = MAX_QUEUED_FRAMES + 2
    proto.dataReceived(b"".join(frame(msg(str(i))) for i in range(n)))
    assert tr.producerState == "paused"
    assert len(h.calls) == 1 and len(proto.pending) == n - 1
    i = 0
    while tr.producerState == "paused":
        h.answer(i)
        i += 1
    assert len(proto.pending) < MAX_QUEUED_FRAMES
    for j in range(i, n):
        h.answer(j)
    assert len(acks(tr)) == n and tr.producerState == "producing"


def test_pending_frames_bounded_by_pause():
    """While paused, a well-behaved transport delivers nothing more; memory is the frames queued."""
    h = Harness()
    proto, tr = h.connect()
    proto.dataReceived(b"".join(frame(msg(str(i))) for i in range(MAX_QUEUED_FRAMES + 1)))
    assert tr.producerState == "paused"
    assert proto.decoder.buffered == 0


def test_event_sink_failure_does_not_break_protocol():
    h = Harness(channel(allow=["10.0.0.1"]))

    def broken(**kw):
        raise RuntimeError("db down")

    h.factory.event_sink = broken
    proto, tr = h.connect(host="10.0.0.2")
    assert tr.disconnecting


def test_synchronous_handler_result():
    """A handler that answers at once (already-fired Deferred) works the same."""
    from twisted.internet.defer import succeed

    clock = task.Clock()
    f = MLLPFactory(
        channel(), lambda data, peer: succeed(Outcome("accepted", ack_for(data), "AA")), clock=clock
    )
    proto = f.buildProtocol(None)
    tr = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))
    proto.makeConnection(tr)
    proto.dataReceived(frame(msg("1")) + frame(msg("2")) + frame(msg("3")))
    assert acks(tr) == [ack_for(msg(c)) for c in "123"]


def test_synchronous_failure():
    clock = task.Clock()
    f = MLLPFactory(channel(), lambda data, peer: fail(RuntimeError("x")), clock=clock)
    proto = f.buildProtocol(None)
    tr = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))
    proto.makeConnection(tr)
    proto.dataReceived(frame(msg("1")) + frame(msg("2")))
    assert tr.disconnecting and tr.value() == b""
