"""Outbound MLLP delivery against a real peer on 127.0.0.1 (port 0): connect and ACK timeouts,
reconnects, ACKs matched by MSA-2, AA/CA done, AE retried (or error with on_ae: error),
AR to the error queue, connection failures retried per policy."""

from __future__ import annotations

import random
import socket
import threading

from sqlalchemy import select

from interface.config.channels import Destination
from interface.engine.outbound import AckReply, DownstreamError, DownstreamUnavailable, MLLPSender, check_ack
from interface.hl7.errors import PermanentError
from interface.hl7.framing import FrameDecoder, frame
from interface.store.schema import work_attempts
from tests.test_destinations import Rig, adt, channel


class FlakyPeer:
    """A downstream MLLP receiver in a thread. ``script(n, control_id)`` picks what to do with
    the n-th message received (1-based, resends count): ``ack`` (AA), ``ae``, ``ar``, ``drop`` (no
    ACK, connection kept), ``close`` (hang up without ACK), ``delay`` (ACK after ``delay`` s),
    ``stale`` (first an ACK for the previous control id, then the right one), ``restart``
    (hang up, stop listening for ``down`` s, listen again on the same port). ``tls``: a server
    SSLContext to wrap each connection in (handshake failures are counted in ``tls_failures``)."""

    def __init__(self, script=lambda n, ctl: "ack", *, delay: float = 0.6, down: float = 0.4, tls=None):
        self.script = script
        self.tls = tls
        self.tls_failures = 0
        self.delay, self.down = delay, down
        self.received: list[str] = []  # control ids, in arrival order (resends included)
        self.acked: list[str] = []  # control ids we answered AA for, with MSA-2 = that id
        self.messages: list[bytes] = []
        self.connections = 0
        self.stop = threading.Event()
        self.listener = self._listen(0)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _listen(self, port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(4)
        s.settimeout(0.05)
        return s

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        if self.listener is not None:
            self.listener.close()

    def _run(self):
        while not self.stop.is_set():
            if self.listener is None:
                self.stop.wait(self.down)
                self.listener = self._listen(self.port)
                continue
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            self.connections += 1
            if self.tls is not None:
                conn.settimeout(5)
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:  # ssl.SSLError included: the client refused us, or we it
                    self.tls_failures += 1
                    conn.close()
                    continue
            with conn:
                self._serve(conn)

    @staticmethod
    def _ack(ctl: str, code: str = "AA") -> bytes:
        return frame(
            f"MSH|^~\\&|PEER|X|INT|HOSP|20260101||ACK^A08^ACK|P{ctl}|P|2.5.1\rMSA|{code}|{ctl}\r".encode()
        )

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        dec = FrameDecoder()
        while not self.stop.is_set():
            try:
                data = conn.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            if not data:
                return
            for msg in dec.feed(data):
                fields = msg.split(b"\r")[0].split(b"|")
                if len(fields) < 10:  # not HL7 (e.g. bytes of a TLS hello): hang up
                    return
                ctl = fields[9].decode(errors="replace")
                prev = self.received[-1] if self.received else "NONE"
                self.received.append(ctl)
                self.messages.append(msg)
                action = self.script(len(self.received), ctl)
                try:
                    if action == "drop":
                        continue
                    if action == "close":
                        return
                    if action == "restart":
                        self.listener.close()
                        self.listener = None
                        return
                    if action == "delay":
                        self.stop.wait(self.delay)
                    if action == "stale":
                        conn.sendall(self._ack(prev))
                    if action in ("ae", "ar"):
                        conn.sendall(self._ack(ctl, action.upper()))
                        continue
                    conn.sendall(self._ack(ctl))
                    self.acked.append(ctl)
                except OSError:
                    return


def _msg(cid: str) -> bytes:
    return adt(cid, "M1")


def test_aa_is_matched_by_msa2_and_connection_reused():
    """AA with MSA-2 = sent MSH-10; the connection is reused for the next message."""
    with FlakyPeer() as peer:
        s = MLLPSender("127.0.0.1", peer.port, connect_timeout=2, ack_timeout=2)
        assert s.send(_msg("C1")).code == "AA"
        r = s.send(_msg("C2"))
        assert (r.code, r.control_id) == ("AA", "C2")
        s.close()
    assert peer.received == ["C1", "C2"] and s.connects == 1


def test_stale_ack_for_another_control_id_is_skipped():
    """An ACK whose MSA-2 is not ours is never taken for ours."""
    with FlakyPeer(lambda n, ctl: "stale" if n == 2 else "ack") as peer:
        s = MLLPSender("127.0.0.1", peer.port, connect_timeout=2, ack_timeout=2)
        s.send(_msg("C1"))
        r = s.send(_msg("C2"))
        s.close()
    assert r.control_id == "C2" and s.skipped_acks == 1


def test_no_ack_in_time_is_transient_and_the_next_send_reconnects():
    """A dropped ACK times out (transient); the late connection is closed, a new one is used."""
    with FlakyPeer(lambda n, ctl: "drop" if n == 1 else "ack") as peer:
        s = MLLPSender("127.0.0.1", peer.port, connect_timeout=2, ack_timeout=0.3)
        try:
            s.send(_msg("C1"))
        except DownstreamUnavailable as exc:
            assert "no ACK" in str(exc)
        else:
            raise AssertionError("expected DownstreamUnavailable")
        assert s.send(_msg("C1")).code == "AA"
        s.close()
    assert s.connects == 2 and peer.received == ["C1", "C1"]


def test_peer_closing_a_fresh_connection_is_transient():
    """Closed without an ACK on a new connection: transient (retried later, not resent now)."""
    with FlakyPeer(lambda n, ctl: "close") as peer:
        s = MLLPSender("127.0.0.1", peer.port, connect_timeout=2, ack_timeout=2)
        try:
            s.send(_msg("C1"))
        except DownstreamUnavailable as exc:
            assert "closed" in str(exc)
        else:
            raise AssertionError("expected DownstreamUnavailable")
    assert peer.received == ["C1"]


def test_connection_refused_is_transient():
    """Nothing listening: DownstreamUnavailable, quickly."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    s = MLLPSender("127.0.0.1", port, connect_timeout=1, ack_timeout=1)
    try:
        s.send(_msg("C1"))
    except DownstreamUnavailable as exc:
        assert "cannot connect" in str(exc)
    else:
        raise AssertionError("expected DownstreamUnavailable")


def test_reused_connection_closed_by_peer_reconnects_once():
    """The peer hung up an idle connection: the next send reconnects and succeeds."""
    with FlakyPeer(lambda n, ctl: "close" if n == 2 else "ack") as peer:
        s = MLLPSender("127.0.0.1", peer.port, connect_timeout=2, ack_timeout=2)
        s.send(_msg("C1"))
        assert s.send(_msg("C2")).code == "AA"
        s.close()
    assert peer.received == ["C1", "C2", "C2"] and s.connects == 2


def test_ack_codes_decide_done_retry_or_error():
    """AA/CA done; AE/CE retried (or error with on_ae: error); AR/CR error queue."""
    d = Destination(name="lab", type="mllp", host="h", port=1)
    strict = Destination(name="lab", type="mllp", host="h", port=1, on_ae="error")
    for code in ("AA", "CA"):
        check_ack(AckReply(code, "C", "", b""), d)
    check_ack(None, d)  # MSH-15 NE: nothing to wait for
    for code in ("AE", "CE"):
        try:
            check_ack(AckReply(code, "C", "busy", b""), d)
        except DownstreamError as exc:
            assert exc.reason == "downstream_refused"
        else:
            raise AssertionError(code)
        try:
            check_ack(AckReply(code, "C", "bad", b""), strict)
        except PermanentError as exc:
            assert exc.reason == "downstream_refused"
        else:
            raise AssertionError(code)
    for code in ("AR", "CR"):
        try:
            check_ack(AckReply(code, "C", "", b""), d)
        except PermanentError as exc:
            assert exc.reason == "downstream_refused" and "refused" in str(exc)
        else:
            raise AssertionError(code)


def _real_rig(engine, port, **dest):
    rig = Rig(
        engine,
        channel(
            [
                {
                    "name": "lab",
                    "type": "mllp",
                    "host": "127.0.0.1",
                    "port": port,
                    "timeout_seconds": 0.5,
                    "connect_timeout_seconds": 1,
                    "retry": {"initial_delay_seconds": 2, "jitter": 0, "max_attempts": 3},
                    **dest,
                }
            ],
            mapping=None,
        ),
    )
    rig.out.sender_factory = lambda d: MLLPSender(
        d.host, d.port, connect_timeout=d.connect_timeout_seconds, ack_timeout=d.timeout_seconds
    )
    return rig


def test_worker_ae_retries_then_error_queue_with_history(engine):
    """AE from the peer: retried per policy on the injected clock, then the error queue with
    reason, last error and the attempt history."""
    with FlakyPeer(lambda n, ctl: "ae") as peer:
        rig = _real_rig(engine, peer.port)
        rig.send(_msg("C1"))
        rig.drain()
        assert rig.status("lab") == {"C1": "pending"}
        rig.clock.advance(2)
        rig.drain()
        assert rig.status("lab") == {"C1": "pending"}
        rig.clock.advance(3.9)  # second delay is 4 s: not yet
        rig.drain()
        assert len(peer.received) == 2
        rig.clock.advance(0.1)
        rig.drain()
        rig.out.close()
    item = rig.items("lab")[0]
    assert (item.status, item.attempts, item.reason) == ("error", 3, "downstream_refused")
    assert "AE" in item.last_error
    with engine.connect() as conn:
        hist = (
            conn.execute(
                select(work_attempts.c.outcome)
                .where(work_attempts.c.item_id == item.id)
                .order_by(work_attempts.c.id)
            )
            .scalars()
            .all()
        )
    assert hist == ["retry", "retry", "error"] and peer.received == ["C1"] * 3


def test_worker_ar_goes_straight_to_error_queue(engine):
    """AR: downstream refused, no retry; the key's next message waits behind it."""
    with FlakyPeer(lambda n, ctl: "ar" if ctl == "C1" else "ack") as peer:
        rig = _real_rig(engine, peer.port)
        rig.send(_msg("C1"))
        rig.send(_msg("C2"))
        rig.drain()
        rig.out.close()
    assert rig.status("lab") == {"C1": "error", "C2": "pending"}
    item = rig.items("lab")[0]
    assert (item.attempts, item.reason) == (1, "downstream_refused")
    assert peer.received == ["C1"]


def test_worker_on_ae_error_is_permanent(engine):
    """on_ae: error sends an AE straight to the error queue."""
    with FlakyPeer(lambda n, ctl: "ae") as peer:
        rig = _real_rig(engine, peer.port, on_ae="error")
        rig.send(_msg("C1"))
        rig.drain()
        rig.out.close()
    item = rig.items("lab")[0]
    assert (item.status, item.attempts) == ("error", 1)


def test_jitter_uses_the_injected_rng(engine):
    """The same seed gives the same retry schedule; delays stay within the jitter band."""
    from interface.store.workqueue import RetryPolicy

    p = RetryPolicy(initial_delay=1, factor=2, jitter=0.25, max_delay=10, max_attempts=9)
    a = [p.delay(n, random.Random(3)) for n in range(1, 8)]
    b = [p.delay(n, random.Random(3)) for n in range(1, 8)]
    assert a == b
    for n, d in enumerate(a, 1):
        base = min(10, 2 ** (n - 1))
        assert base * 0.75 <= d <= base * 1.25
    assert not p.exhausted(8) and p.exhausted(9)


def test_interface_run_delivers_to_mllp_and_file_destinations(db_url, tmp_path):
    """End to end through `interface run`: messages in over MLLP, out to an MLLP peer (in order,
    each ACKed by MSA-2) and to a file drop, by the service's OutboundWorker."""
    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from interface.engine.client import MLLPClient

    root = Path(__file__).resolve().parent.parent
    out_dir = tmp_path / "out"
    with FlakyPeer() as peer:
        chdir = tmp_path / "channels"
        chdir.mkdir()
        (chdir / "relay.yaml").write_text(
            "name: relay\nlisten: tcp:0:interface=127.0.0.1\naccept: ['ADT^*']\nmrn: {authority: HOSP}\n"
            "destinations:\n"
            f"  - {{name: lab, type: mllp, host: 127.0.0.1, port: {peer.port}, timeout_seconds: 5}}\n"
            f"  - {{name: drop, type: file, directory: '{out_dir}', filename: '{{control_id}}.hl7'}}\n"
        )
        ready = tmp_path / "ready.json"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "interface.ops.cli",
                "run",
                "--db",
                db_url,
                "--channels",
                str(chdir),
                "--mappings",
                str(root / "mappings"),
                "--no-web",
                "--ready-file",
                str(ready),
                "--var",
                str(tmp_path / "var"),
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "interface run did not start"
                time.sleep(0.05)  # polling a real subprocess, with a deadline
            port = json.loads(ready.read_text())["ports"]["relay"]
            with MLLPClient("127.0.0.1", port, timeout=10) as client:
                for cid in ("R1", "R2", "R3"):
                    assert client.send(adt(cid, "M1")).code == "AA"
            while len(peer.received) < 3 or len(list(out_dir.glob("*.hl7"))) < 3:
                assert time.monotonic() < deadline, (peer.received, list(out_dir.glob("*")))
                time.sleep(0.05)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            proc.stderr.close()
    assert peer.received == ["R1", "R2", "R3"] and peer.acked == ["R1", "R2", "R3"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["R1.hl7", "R2.hl7", "R3.hl7"]
    assert (out_dir / "R2.hl7").read_bytes() == adt("R2", "M1")


def test_a_hung_peer_delays_only_its_own_lane(engine):
    """One worker thread per outbound destination: while one peer swallows every message (the
    sender waits for its ACK timeout), the other destination's messages are all delivered."""
    import datetime as dt
    import time

    from interface.engine.outbound import outbound_lanes, outbound_workers
    from interface.engine.processing import Pipeline

    with FlakyPeer(lambda n, ctl: "drop") as hung, FlakyPeer() as good:
        ch = channel(
            [
                {
                    "name": "slow",
                    "type": "mllp",
                    "host": "127.0.0.1",
                    "port": hung.port,
                    "timeout_seconds": 6,
                },
                {
                    "name": "fast",
                    "type": "mllp",
                    "host": "127.0.0.1",
                    "port": good.port,
                    "timeout_seconds": 3,
                },
            ],
            mapping=None,
        )
        rig = Rig(engine, ch)
        for cid in ("H1", "H2", "H3"):
            rig.send(adt(cid, "M1"))
        assert outbound_lanes([ch]) == ["out:adt/slow|", "out:adt/fast|"]
        workers = outbound_workers(
            engine, Pipeline([ch], {}), [ch], clock=lambda: dt.datetime.now(dt.timezone.utc)
        )
        started = time.monotonic()
        for w in workers:
            w.start(idle_wait=0.05)
        try:
            deadline = started + 5  # less than the hung peer's ACK timeout
            # wait for both: the fast lane done, and the hung peer holding its first message
            while (len(good.acked) < 3 or not hung.received) and time.monotonic() < deadline:
                time.sleep(0.02)  # polling real sockets and threads, with a deadline
            fast_done = time.monotonic() - started
            assert good.acked == ["H1", "H2", "H3"] and hung.received == ["H1"], (fast_done, good.acked)
        finally:
            for w in workers:
                w.stop(10)
