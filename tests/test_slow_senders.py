"""Slow and greedy connections: frame deadline, minimum receive rate, per-peer connection limit
and the channel's cap on bytes held in partial frames (task.Clock and StringTransport; one real
loopback test)."""

from __future__ import annotations

import socket
import time

import pytest

from interface.hl7.framing import frame

from .test_transport import Harness, acks, channel, msg

SB = b"\x0b"


def limits(**kw) -> dict:
    return {"limits": kw}


def kinds(h: Harness) -> list[str]:
    return [e["kind"] for e in h.events]


def test_slowloris_one_byte_every_few_seconds_is_cut_by_the_receive_rate():
    """A sender that starts a frame and then sends a byte every 3 s (the idle timer, reset by
    every byte, never fires) is cut at the first rate window (10 s, 512 bytes/s wanted): event
    slow_sender, connection aborted, nothing handed to the engine."""
    h = Harness()
    proto, tr = h.connect()
    proto.dataReceived(SB + b"M")
    for _ in range(3):
        h.clock.advance(3)
        proto.dataReceived(b"S")
    assert not tr.disconnecting and not tr.disconnected
    h.clock.advance(1.1)  # 10.1 s after the start block
    assert kinds(h) == ["slow_sender"]
    assert tr.disconnected  # abortConnection
    assert h.calls == []
    assert h.factory.partial_bytes == 0


def test_frame_deadline_cuts_a_frame_that_arrives_fast_enough_but_never_ends():
    """With the rate minimum off, a frame that keeps trickling in is cut frame_timeout_seconds
    after its start block (event frame_timeout), however often bytes come."""
    h = Harness(channel(**limits(min_receive_rate=0, frame_timeout_seconds=30)))
    proto, tr = h.connect()
    proto.dataReceived(SB + b"MSH|")
    for _ in range(29):
        h.clock.advance(1)
        proto.dataReceived(b"x")
    assert not tr.disconnected
    h.clock.advance(1.01)
    assert kinds(h) == ["frame_timeout"] and tr.disconnected


def test_a_steady_large_frame_and_an_idle_connection_are_not_cut():
    """A frame arriving at 10 KB/s over 25 s is taken whole and answered; between frames only
    the idle timeout applies (no frame deadline for a connection that sends nothing)."""
    h = Harness()
    proto, tr = h.connect()
    body = msg("BIG1") + b"NTE|1||" + b"x" * 250_000 + b"\r"
    data = frame(body)
    for i in range(0, len(data), 10_000):
        proto.dataReceived(data[i : i + 10_000])
        h.clock.advance(1)
    assert len(h.calls) == 1 and h.calls[0][0] == body
    h.answer(0)
    assert len(acks(tr)) == 1
    h.clock.advance(500)  # idle, under the 600 s idle timeout
    assert h.events == [] and not tr.disconnected


def test_a_paused_connection_is_not_blamed_for_slowness():
    """While the socket is paused (the engine is behind, the queue of frames is full) a partial
    frame is neither rate-checked nor timed out: we are the ones not reading."""
    h = Harness(channel(**limits(frame_timeout_seconds=20)))
    proto, tr = h.connect()
    proto.dataReceived(b"".join(frame(msg(f"P{i}")) for i in range(5)) + SB + b"MSH|")
    assert tr.producerState == "paused" and proto.decoder.in_frame
    h.clock.advance(100)
    assert h.events == [] and not tr.disconnected


def test_per_peer_connection_limit_leaves_room_for_other_senders():
    """Past max_connections_per_peer from one address the next connection from it is refused
    (event too_many_connections_from_peer); another address still connects; closing one frees
    its place."""
    h = Harness(channel(**limits(max_connections_per_peer=2)))
    conns = [h.connect("10.0.0.5", 40000 + i) for i in range(3)]
    assert [tr.disconnected for _, tr in conns] == [False, False, True]
    assert kinds(h) == ["too_many_connections_from_peer"]
    _, other = h.connect("10.0.0.6", 41000)
    assert not other.disconnected
    conns[0][0].connectionLost(None)
    _, again = h.connect("10.0.0.5", 42000)
    assert not again.disconnected
    assert h.factory.per_peer == {"10.0.0.5": 2, "10.0.0.6": 1}


def test_bytes_held_in_partial_frames_are_capped_per_channel():
    """max_partial_bytes 8192 over connections holding 3000-byte partial frames: the third
    connection's bytes would pass it, so that connection is cut (partial_bytes_cap) and its
    bytes released; the first two complete their frames and are answered."""
    h = Harness(channel(**limits(max_frame_bytes=4096, max_partial_bytes=8192)))
    conns = [h.connect("10.0.0.%d" % i) for i in range(1, 4)]
    bodies = [msg(f"C{i}") + b"NTE|1||" + b"y" * 2950 for i in range(3)]
    for (proto, _), body in zip(conns, bodies):
        proto.dataReceived(SB + body)
    assert kinds(h) == ["partial_bytes_cap"]
    assert [tr.disconnected for _, tr in conns] == [False, False, True]
    assert h.factory.partial_bytes == sum(len(b) for b in bodies[:2])
    for proto, _ in conns[:2]:
        proto.dataReceived(b"\x1c\r")
    assert h.factory.partial_bytes == 0 and len(h.calls) == 2


def test_partial_cap_below_frame_size_is_a_config_error():
    """max_partial_bytes smaller than max_frame_bytes is refused when the channel loads."""
    with pytest.raises(ValueError, match="max_partial_bytes"):
        channel(**limits(max_frame_bytes=1 << 20, max_partial_bytes=4096))


def test_loopback_slow_sender_is_disconnected_by_the_real_engine(tmp_path, db_url):
    """Real `interface run` on loopback with receive_rate_window_seconds 1: a socket that sends a
    start block and then one byte is closed by the engine within a few seconds, while a normal
    client on the same channel is answered AA."""
    from interface.engine.client import MLLPClient

    from .test_loopback import ROOT, EngineProcess

    chdir = tmp_path / "channels"
    chdir.mkdir()
    text = (ROOT / "channels" / "adt.yaml").read_text()
    text = text.replace(
        "  max_connections: 100\n",
        "  max_connections: 100\n  receive_rate_window_seconds: 1\n  frame_timeout_seconds: 5\n",
    )
    (chdir / "adt.yaml").write_text(text)
    with EngineProcess(tmp_path, db_url, channels=chdir, listen={"adt": "tcp:0:interface=127.0.0.1"}) as eng:
        port = eng.ports["adt"]
        slow = socket.create_connection(("127.0.0.1", port), timeout=15)
        try:
            slow.sendall(SB + b"M")
            started = time.monotonic()
            assert slow.recv(1024) == b""  # closed by the engine (or reset)
        except ConnectionResetError:
            pass
        finally:
            slow.close()
        assert time.monotonic() - started < 10
        with MLLPClient("127.0.0.1", port, timeout=15) as client:
            ack = client.send(msg("LOOP1").replace(b"PID|1", b"PID|1||SLOW1^^^HOSP^MR"))
        assert ack.code == "AA"
