"""`interface send` against a real engine process: output per message and the exit code."""

from __future__ import annotations

import socket
import subprocess

import pytest

from interface.engine.client import AckResult, MLLPClient, messages_in_file, parse_ack
from interface.ops import cli
from tests.test_loopback import ADT, BIN, ROOT, EngineProcess, sample

ORU = b"MSH|^~\\&|LAB|HOSP|IF|HOSP|20260101||ORU^R01|LAB9|P|2.5.1\rPID|1||1^^^HOSP^MR\r"


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    """One engine for the module, on a SQLite file of its own (rows are not asserted here)."""
    tmp = tmp_path_factory.mktemp("send")
    with EngineProcess(tmp, f"sqlite:///{tmp / 'send.db'}") as p:
        yield p


def run_send(capsys, *args) -> tuple[int, list[list[str]], str]:
    code = cli.main(["send", "--timeout", "20", *map(str, args)])
    out = capsys.readouterr()
    return code, [line.split("\t") for line in out.out.splitlines()], out.err


def test_all_accepted_exit_0(proc, capsys):
    code, lines, _ = run_send(
        capsys,
        "--port",
        proc.ports["adt"],
        ADT / "01-a28-add-person-chen.hl7",
        ADT / "04-a04-register-rivera.hl7",
    )
    assert code == 0
    assert [(l[1], l[2]) for l in lines] == [("SMP0001", "CA"), ("SMP0004", "CA")]


def test_one_rejected_exit_1(proc, capsys, tmp_path):
    bad = tmp_path / "oru.hl7"
    bad.write_bytes(ORU)
    code, lines, _ = run_send(capsys, "--port", proc.ports["adt"], ADT / "08-a01-admit-chen.hl7", bad)
    assert code == 1
    assert lines[0][2] in ("AA", "CA") and lines[1][1:3] == ["LAB9", "AR"]
    assert "ORU" in lines[1][3]


def test_file_with_several_messages_lf_separated(proc, capsys, tmp_path):
    f = tmp_path / "many.hl7"
    f.write_bytes(
        b"\n".join(
            sample(n).replace(b"\r", b"\n")
            for n in ("02-a31-update-person-chen.hl7", "03-a05-preadmit-chen.hl7")
        )
    )
    assert [m.split(b"\r")[0].split(b"|")[9] for m in messages_in_file(f)] == [b"SMP0002", b"SMP0003"]
    assert all(b"\n" not in m for m in messages_in_file(f))
    code, lines, _ = run_send(capsys, "--port", proc.ports["adt"], f)
    assert code == 0 and [l[1] for l in lines] == ["SMP0002", "SMP0003"]


def test_unreadable_file_exit_1(proc, capsys, tmp_path):
    f = tmp_path / "junk.hl7"
    f.write_bytes(b"not a message")
    code, _, err = run_send(capsys, "--port", proc.ports["adt"], f)
    assert code == 1 and "cannot read" in err


def test_nobody_listening_exit_1(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        code, lines, _ = run_send(capsys, "--port", port, ADT / "01-a28-add-person-chen.hl7")
    assert code == 1 and lines[0][2] == "--"


def test_msh15_ne_not_counted_as_accepted(proc, capsys, tmp_path):
    """MSH-15 NE: nothing is answered, so nothing is confirmed: exit 1, the next message still
    gets its own ACK on the same connection."""
    f = tmp_path / "ne.hl7"
    ne = sample("12-a08-update-rivera.hl7").replace(b"|AL|NE|", b"|NE|NE|", 1)
    f.write_bytes(ne + b"\n" + sample("13-a03-discharge-rivera.hl7"))
    code, lines, _ = run_send(capsys, "--port", proc.ports["adt"], f)
    assert code == 1
    assert lines[0][2] == "NE" and lines[1][2] == "CA"


def test_subprocess_exit_code(proc):
    p = subprocess.run(
        [
            str(BIN),
            "send",
            "--port",
            str(proc.ports["adt"]),
            "--timeout",
            "20",
            str(ADT / "05-a06-outpatient-to-inpatient-rivera.hl7"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0 and p.stdout.strip().endswith("CA")


def test_client_skips_late_answer_to_ne_message():
    """A late answer to an NE message is not taken as the next message's ACK."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    import threading

    from interface.hl7.framing import FrameDecoder, frame

    def serve():
        conn, _ = srv.accept()
        dec, got = FrameDecoder(), []
        with conn:
            while len(got) < 2:
                got += dec.feed(conn.recv(65536))
            conn.sendall(frame(b"MSH|^~\\&|||||||ACK|1|P|2.5\rMSA|CE|N1\r"))
            conn.sendall(frame(b"MSH|^~\\&|||||||ACK|2|P|2.5\rMSA|CA|N2\r"))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with MLLPClient("127.0.0.1", port, timeout=10) as c:
            m1 = b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|N1|P|2.5|||NE\r"
            m2 = b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|N2|P|2.5|||AL\r"
            assert c.send(m1).code == "NE"
            r = c.send(m2)
        assert (r.control_id, r.code) == ("N2", "CA")
    finally:
        t.join(10)
        srv.close()


def test_ack_result_ok_and_parse_ack():
    assert AckResult("1", "AA").ok and AckResult("1", "CA").ok
    assert not any(AckResult("1", c).ok for c in ("AE", "AR", "CE", "CR", "NE", "--"))
    assert parse_ack(b"MSH|^~\\&|||||||ACK|1|P|2.5\rMSA|AE|X\rERR||PID^1^3|101^x^HL70357|E||||missing") == (
        "AE",
        "X",
        "missing",
    )
