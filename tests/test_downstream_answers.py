"""What a downstream MLLP peer on loopback answers, and what the engine makes of it: the reason
of an AE/AR is read from MSA-3, then ERR-8, then ERR-3's text (CWE-2), then a v2.3 ERR-1 (never
ERR-4, the severity letter); a destination or return address with ``expect_ack: false`` is sent
"expect no reply" and delivered once written."""

from __future__ import annotations

import socket
import threading

import pytest

from interface.engine.client import ack_reason, parse_ack
from interface.engine.outbound import sender_for
from interface.hl7.framing import FrameDecoder, frame
from tests.test_destinations import Rig, adt, channel


def wait_for(peer: "AnsweringPeer", predicate, timeout: float = 30.0) -> bool:
    """Wait (on the peer's receive event, with a deadline) until ``predicate()`` holds."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        peer.got.wait(0.5)
        peer.got.clear()
    return True


class AnsweringPeer:
    """A downstream MLLP receiver in a thread: ``answer(control_id, raw)`` gives the ACK
    message (unframed bytes) to send back, or None to send nothing. Records what it got."""

    def __init__(self, answer):
        self.answer = answer
        self.messages: list[bytes] = []
        self.answered = threading.Event()  # set after each answer is written
        self.got = threading.Event()  # set after each message received
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        self.listener.close()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            with conn:
                conn.settimeout(0.05)
                dec = FrameDecoder()
                while not self.stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except (socket.timeout, TimeoutError):
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    for msg in dec.feed(data):
                        self.messages.append(msg)
                        self.got.set()
                        ctl = msg.split(b"\r")[0].split(b"|")[9].decode()
                        out = self.answer(ctl, msg)
                        if out is not None:
                            conn.sendall(frame(out))
                            self.answered.set()


def _msg(cid: str) -> bytes:
    return (
        f"MSH|^~\\&|INT|HOSP|LAB|LAB|20260301||ADT^A08^ADT_A01|{cid}|P|2.5.1\rPID|1||M1^^^HOSP^MR\r".encode()
    )


SHAPES = {
    # MSA-3 wins over everything (v2.5.1 still allows it; many peers use only it)
    "msa3": (
        "MSH|^~\\&|LAB|LAB|INT|HOSP|20260301||ACK^A08^ACK|A1|P|2.5.1\r"
        "MSA|AE|{ctl}|patient locked by another user\r"
        "ERR||PID^1^3|206^Application record locked^HL70357|E||||ignored\r",
        "patient locked by another user",
    ),
    # ERR-8 (user message) before ERR-3's text; ERR-4 "E" is never the reason
    "err8": (
        "MSH|^~\\&|LAB|LAB|INT|HOSP|20260301||ACK^A08^ACK|A1|P|2.5.1\r"
        "MSA|AE|{ctl}\rERR||PID^1^7|102^Data type error^HL70357|E||||date of birth is not a date\r",
        "date of birth is not a date",
    ),
    # only ERR-3 (CWE): its text, CWE-2, with the peer's escapes resolved
    "err3": (
        "MSH|^~\\&|LAB|LAB|INT|HOSP|20260301||ACK^A08^ACK|A1|P|2.5.1\r"
        "MSA|AE|{ctl}\rERR||PID^1^3|204^Unknown key identifier \\T\\ more^HL70357|E\r",
        "Unknown key identifier & more",
    ),
    # a v2.3 peer: ERR-1 is ELD (segment^sequence^field^code&text&system)
    "err1": (
        "MSH|^~\\&|LAB|LAB|INT|HOSP|20260301||ACK^A08|A1|P|2.3\r"
        "MSA|AE|{ctl}\rERR|PID^1^3^204&Unknown key identifier&HL70357\r",
        "Unknown key identifier",
    ),
    # nothing but a code: the code, still not the severity
    "code": (
        "MSH|^~\\&|LAB|LAB|INT|HOSP|20260301||ACK^A08^ACK|A1|P|2.5.1\rMSA|AE|{ctl}\rERR|||207|E\r",
        "207",
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_downstream_ae_reason_from_msa3_err8_err3_or_err1(engine, shape):
    """A fake downstream peer on loopback answers AE in each shape: the work item's last error
    (what the error queue shows) carries the peer's reason, never ERR-4's severity letter."""
    body, reason = SHAPES[shape]
    with AnsweringPeer(lambda ctl, raw: body.format(ctl=ctl).encode()) as peer:
        rig = Rig(
            engine,
            channel(
                [
                    {
                        "name": "lab",
                        "type": "mllp",
                        "host": "127.0.0.1",
                        "port": peer.port,
                        "timeout_seconds": 2,
                        "on_ae": "error",
                    }
                ],
                mapping=None,
            ),
        )
        rig.out.sender_factory = sender_for
        rig.send(_msg("D1"))
        rig.drain()
        rig.out.close()
    item = rig.items("lab")[0]
    assert (item.status, item.reason) == ("error", "downstream_refused")
    assert item.last_error == f"downstream error: lab answered AE: {reason}"
    assert len(peer.messages) == 1


def test_ack_reason_order_and_parse_ack():
    """ack_reason: MSA-3, ERR-8, ERR-3.2, ERR-1 in that order; parse_ack returns it as its text."""
    assert parse_ack(SHAPES["err8"][0].format(ctl="X").encode()) == ("AE", "X", "date of birth is not a date")
    assert ack_reason("MSH|^~\\&|||||||ACK|1|P|2.5\rMSA|AA|X\r") == ""
    # the first ERR with a user message wins over a later one's, and over any ERR-3 text
    two = "MSH|^~\\&|||||||ACK|1|P|2.5\rMSA|AR|X\rERR|||200^Unsupported^HL70357|E\rERR||||E||||second\r"
    assert ack_reason(two) == "second"
    # other delimiters (MSH-1 '#', MSH-2 '$*!@'): read with the ACK's own
    assert (
        ack_reason("MSH#$*!@#####ACK#1#P#2.5\rMSA#AE#X\rERR###101$missing !T! gone$HL70357#E\r")
        == "missing @ gone"
    )  # !T! is this ACK's subcomponent separator


def test_expect_no_reply_destination_is_done_once_written(engine):
    """An mllp destination with expect_ack: false, to a peer that never answers: each message is
    delivered once written (no wait, no retry), in order, on one connection."""
    with AnsweringPeer(lambda ctl, raw: None) as peer:
        rig = Rig(
            engine,
            channel(
                [
                    {
                        "name": "lab",
                        "type": "mllp",
                        "host": "127.0.0.1",
                        "port": peer.port,
                        "timeout_seconds": 30,
                        "expect_ack": False,
                    }
                ],
                mapping=None,
            ),
        )
        rig.out.sender_factory = sender_for
        for cid in ("N1", "N2", "N3"):
            rig.send(_msg(cid))
        rig.drain()
        senders = list(rig.out.senders.values())
        rig.out.close()
    assert rig.status("lab") == {"N1": "done", "N2": "done", "N3": "done"}
    assert [m.split(b"|")[9] for m in peer.messages] == [b"N1", b"N2", b"N3"]
    assert [s.connects for s in senders] == [1]


def test_expect_no_reply_discards_answers_that_come_anyway(engine):
    """expect_ack: false to a peer that answers after all: the answers are read and dropped
    before the next send (never taken for anything), and delivery goes on."""
    with AnsweringPeer(
        lambda ctl, raw: f"MSH|^~\\&|L|L|I|H|1||ACK|A{ctl}|P|2.5.1\rMSA|AA|{ctl}\r".encode()
    ) as peer:
        rig = Rig(
            engine,
            channel(
                [
                    {
                        "name": "lab",
                        "type": "mllp",
                        "host": "127.0.0.1",
                        "port": peer.port,
                        "expect_ack": False,
                    }
                ],
                mapping=None,
            ),
        )
        rig.out.sender_factory = sender_for
        rig.send(_msg("Q1"))
        rig.drain()
        sender = next(iter(rig.out.senders.values()))
        assert peer.answered.wait(5)  # the peer's answer to Q1 is on its way before Q2 goes
        with socket.create_connection(("127.0.0.1", peer.port)):
            pass  # (a round trip through the peer's accept loop: its answer has been written)
        rig.send(_msg("Q2"))
        rig.drain()
        rig.out.close()
    assert rig.status("lab") == {"Q1": "done", "Q2": "done"}
    assert len(peer.messages) == 2 and sender.connects == 1
    assert sender.skipped_acks >= 1  # Q1's answer, read and dropped


def test_application_ack_expect_no_reply_says_msh15_ne(engine):
    """ack.application_ack with expect_ack: false: the application ACK goes out with MSH-15 NE
    (so a conforming receiver does not answer either), to a peer that never answers, and is done."""
    with AnsweringPeer(lambda ctl, raw: None) as peer:
        ch = channel(
            ack={
                "application_ack": {
                    "host": "127.0.0.1",
                    "port": peer.port,
                    "timeout_seconds": 30,
                    "expect_ack": False,
                }
            }
        )
        rig = Rig(engine, ch)
        rig.out.sender_factory = sender_for
        out = rig.send(adt("E1", "M1", "A01", msh15="AL", msh16="AL"))
        assert out.ack_code == "CA"
        rig.drain()
        assert peer.got.wait(10), "the peer never got the application ACK"
        rig.out.close()
    assert [i.status for i in rig.items("application_ack")] == ["done"]
    msh = peer.messages[0].split(b"\r")[0].split(b"|")
    assert (msh[14], msh[15]) == (b"NE", b"NE")
    assert peer.messages[0].split(b"\r")[1].split(b"|")[:3] == [b"MSA", b"AA", b"E1"]
