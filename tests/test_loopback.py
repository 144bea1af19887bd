"""Real loopback: `interface run` as a subprocess on 127.0.0.1 port 0, real MLLP clients.

The engine process is always stopped at the end (SIGTERM, then SIGKILL); every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from interface.engine.client import MLLPClient, parse_ack
from interface.hl7.framing import FrameDecoder, frame
from interface.store.schema import messages

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "interface"
ADT = ROOT / "sample_messages" / "adt"
MDM = ROOT / "sample_messages" / "mdm"
START_TIMEOUT = 60.0


class EngineProcess:
    """``interface run --no-web`` with every channel on port 0; ports read from --ready-file."""

    def __init__(
        self,
        tmp: Path,
        db_url: str,
        *,
        channels: Path = ROOT / "channels",
        listen: dict[str, str] | None = None,
    ):
        self.tmp = tmp
        self.ready = tmp / "ready.json"
        self.log_path = tmp / "engine.log"
        names = listen or {name: "tcp:0:interface=127.0.0.1" for name in ("adt", "mdm", "siu")}
        self.cmd = [
            str(BIN),
            "run",
            "--var",
            str(tmp / "var"),
            "--db",
            db_url,
            "--no-web",
            "--channels",
            str(channels),
            "--mappings",
            str(ROOT / "mappings"),
            "--ready-file",
            str(self.ready),
        ]
        for name, ep in names.items():
            self.cmd += ["--listen", f"{name}={ep}"]
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}

    def start(self) -> "EngineProcess":
        env = dict(os.environ)
        env.pop("INTERFACE_DB_URL", None)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.ready.exists():
                self.ports = json.loads(self.ready.read_text())["ports"]
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)  # polling a real subprocess, with a deadline
        self.stop()
        raise AssertionError(f"engine did not start: {self.log_path.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        if getattr(self, "log", None):
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture(scope="module")
def shared_db(request, tmp_path_factory):
    """One database for a module's engine process (starting a process per test is slow): the
    session's PostgreSQL database (emptied first) or a SQLite file of the module's own."""
    from tests import conftest

    if conftest.TEST_DB_URL:
        eng = request.getfixturevalue("_pg_engine")
        conftest._truncate(eng)
        yield conftest.PG_SESSION_URL, eng
        return
    from interface.store.db import create_schema, make_engine

    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'loopback.db'}"
    eng = make_engine(url)
    create_schema(eng)
    yield url, eng
    eng.dispose()


@pytest.fixture(scope="module")
def engine_process(shared_db, tmp_path_factory):
    with EngineProcess(tmp_path_factory.mktemp("engine"), shared_db[0]) as p:
        yield p


@pytest.fixture
def engine(shared_db):
    """The module's database (tests here assert on the rows of the control ids they sent)."""
    return shared_db[1]


def stored(engine, *control_ids: str) -> list[dict]:
    q = select(messages).order_by(messages.c.id)
    if control_ids:
        q = q.where(messages.c.control_id.in_(control_ids))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def sample(name: str) -> bytes:
    return (ADT / name).read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")


def test_send_store_resend_reject(engine_process, engine):
    """Over one connection: accepted messages ACKed CA/AA after they are stored, a resend gets the
    same ACK bytes, an unsupported type and an unreadable frame get AR; the connection stays open."""
    port = engine_process.ports["adt"]
    a04, a08 = sample("04-a04-register-rivera.hl7"), sample("12-a08-update-rivera.hl7")
    with MLLPClient("127.0.0.1", port, timeout=20) as c:
        r1 = c.send(a04)
        assert r1.code == "CA" and r1.control_id == "SMP0004"
        rows = stored(engine, "SMP0004")
        assert [(r["control_id"], r["status"] in ("accepted", "processed")) for r in rows] == [
            ("SMP0004", True)
        ]
        assert rows[0]["raw"] == a04 and rows[0]["ack"] == r1.raw
        r2 = c.send(a08)
        assert r2.ok and parse_ack(r2.raw)[1] == r2.control_id
        again = c.send(a04)
        assert again.raw == r1.raw
        oru = b"MSH|^~\\&|LAB|HOSP|IF|HOSP|20260101||ORU^R01|LAB1|P|2.5.1\rPID|1||1^^^HOSP^MR\r"
        r3 = c.send(oru)
        assert r3.code == "AR" and "ORU" in r3.text
        junk = c.send_raw(b"this is not HL7")
        assert parse_ack(junk)[0] == "AR"
    assert len(stored(engine, "SMP0004", "SMP0012")) == 2
    assert [r["status"] for r in stored(engine, "LAB1")] == ["rejected"]
    with engine.connect() as conn:
        junk_rows = conn.execute(select(messages.c.status).where(messages.c.raw == b"this is not HL7")).all()
    assert [r.status for r in junk_rows] == ["rejected"]


def test_pipelined_frames_in_one_write(engine_process, engine):
    """Several frames in one TCP write: one ACK per frame, in order (one in flight per connection)."""
    port = engine_process.ports["adt"]
    msgs = [
        sample(n)
        for n in ("01-a28-add-person-chen.hl7", "02-a31-update-person-chen.hl7", "03-a05-preadmit-chen.hl7")
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"\r\n" + b"".join(frame(m) for m in msgs))
        dec, acks = FrameDecoder(), []
        deadline = time.monotonic() + 20
        while len(acks) < 3 and time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            acks += dec.feed(data)
    assert [parse_ack(a)[1] for a in acks] == ["SMP0001", "SMP0002", "SMP0003"]
    assert len(stored(engine, "SMP0001", "SMP0002", "SMP0003")) == 3


def test_both_channels_and_batch(engine_process, engine):
    """The MDM channel on its own port; an FHS/BHS batch gets one BHS..BTS answer."""
    with MLLPClient("127.0.0.1", engine_process.ports["mdm"], timeout=20) as c:
        r = c.send((MDM / "mdm_t01_original.hl7").read_bytes().replace(b"\n", b"\r"))
        assert r.ok, r
    batch = (
        b"BHS|^~\\&|REG\r"
        + sample("06-a02-transfer-rivera.hl7").rstrip(b"\r")
        + b"\r"
        + sample("07-a12-cancel-transfer-rivera.hl7").rstrip(b"\r")
        + b"\rBTS|2\r"
    )
    with MLLPClient("127.0.0.1", engine_process.ports["adt"], timeout=20) as c:
        ack = c.send_raw(batch)
    assert ack.startswith(b"BHS|") and ack.count(b"MSA|CA|") == 2
    assert [r["batch_index"] for r in stored(engine, "SMP0006", "SMP0007")] == [0, 1]
    assert {r["channel"] for r in stored(engine)} == {"adt", "mdm"}


def test_unknown_channel_override_and_config_error_exit(tmp_path, shared_db):
    """A bad --listen value is refused with exit 1 and a message, nothing left running."""
    p = subprocess.run(
        [str(BIN), "run", "--var", str(tmp_path), "--db", shared_db[0], "--no-web", "--listen", "adt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1 and "CHANNEL=ENDPOINT" in p.stderr


def test_limits_recorded_as_events(shared_db, tmp_path):
    """Real sockets: a sender outside the allowlist is refused, an oversized frame closes the
    connection; both are recorded in the events table; the idle limit closes a silent connection."""
    from interface.store.schema import events

    chdir = tmp_path / "channels"
    chdir.mkdir()
    (chdir / "locked.yaml").write_text("name: locked\nlisten: tcp:0\nallow: [10.0.0.0/8]\n")
    (chdir / "small.yaml").write_text(
        "name: small\nlisten: tcp:0\nlimits:\n  max_frame_bytes: 1024\n  idle_timeout_seconds: 1\n"
    )
    url, db = shared_db
    with EngineProcess(
        tmp_path,
        url,
        channels=chdir,
        listen={"locked": "tcp:0:interface=127.0.0.1", "small": "tcp:0:interface=127.0.0.1"},
    ) as p:
        for port, data in (
            (p.ports["locked"], frame(sample("01-a28-add-person-chen.hl7"))),
            (p.ports["small"], b"\x0b" + b"A" * 4096),
        ):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                    s.sendall(data)
                    assert s.recv(100) == b""  # closed without an answer
            except (ConnectionResetError, BrokenPipeError):
                pass  # aborted by the engine (even during connect): a reset is as good as a close
        with socket.create_connection(("127.0.0.1", p.ports["small"]), timeout=20) as s:
            assert s.recv(100) == b""  # idle for more than a second: closed by the engine
        deadline = time.monotonic() + 20
        kinds: set = set()
        while time.monotonic() < deadline:  # events are written off the reactor thread
            with db.connect() as conn:
                kinds = {(r.kind, r.channel) for r in conn.execute(select(events.c.kind, events.c.channel))}
            if {("refused_peer", "locked"), ("frame_too_large", "small"), ("idle_timeout", "small")} <= kinds:
                break
            time.sleep(0.1)
        assert {("refused_peer", "locked"), ("frame_too_large", "small"), ("idle_timeout", "small")} <= kinds
