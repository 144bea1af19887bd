"""Third-party HL7 v2 peers over real MLLP on 127.0.0.1: software nobody here wrote.

* python-hl7's ``hl7.client.MLLPClient`` sends every ADT sample to ``interface run``; each ACK is
  read back with python-hl7's parser.
* Medplum's MLLP client (``@medplum/hl7``, Node, pinned in tests/peers/package.json and installed
  by ``make peer-deps``) sends every MDM sample and an event the chart cannot apply.
* The engine's MLLP sender delivers to python-hl7's asyncio MLLP server, which answers with
  python-hl7's own ``Message.create_ack``.

The Node peer needs ``node`` and tests/peers/node_modules: missing, the test fails (it does not
skip), with the command that installs them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from pathlib import Path

import hl7
import hl7.client
import hl7.mllp
import pytest

from interface.engine.outbound import MLLPSender
from tests.test_destinations import adt
from tests.test_loopback import ADT, MDM, EngineProcess, shared_db, stored  # noqa: F401

PEERS = Path(__file__).resolve().parent / "peers"
NODE_TIMEOUT = 120


def test_python_hl7_client_sends_every_adt_sample(engine_process, engine):
    """python-hl7's client: one ACK per message, MSA-2 = MSH-10, CA (the channel's enhanced
    mode) or AA; every message stored."""
    sent = []
    client = hl7.client.MLLPClient("127.0.0.1", engine_process.ports["adt"])
    try:
        for path in sorted(ADT.glob("*.hl7")):
            text = path.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r").decode("latin-1")
            msg = hl7.parse(text)
            ack = hl7.parse(client.send_message(text))
            assert str(ack.segment("MSH")[9][0][0]) == "ACK", path.name
            msa = ack.segment("MSA")
            assert str(msa[1]) in ("AA", "CA"), (path.name, str(ack))
            assert str(msa[2]) == str(msg.segment("MSH")[10]), path.name
            sent.append(str(msg.segment("MSH")[10]))
    finally:
        client.close()
    assert sorted(r["control_id"] for r in stored(engine, *sent)) == sorted(sent)


def _node() -> str:
    node = shutil.which("node")
    assert node, "node is not installed: the Node peers need it (Debian: apt-get install nodejs npm)"
    assert (PEERS / "node_modules" / "@medplum" / "hl7").is_dir(), (
        "the Node peers are not installed: run `make peer-deps` (npm ci in tests/peers)"
    )
    return node


def medplum_send(port: int, *files: Path) -> list[dict]:
    done = subprocess.run(
        [_node(), str(PEERS / "medplum_send.js"), str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        cwd=PEERS,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_medplum_client_sends_every_mdm_sample(engine_process, engine):
    """Medplum's Hl7Client: every document (a base64 PDF among them) ACKed for its own control
    id, and stored."""
    files = sorted(MDM.glob("*.hl7"))
    acks = medplum_send(engine_process.ports["mdm"], *files)
    assert len(acks) == len(files)
    for a in acks:
        assert a["ack_type"].startswith("ACK"), a
        assert a["code"] in ("AA", "CA") and a["acked"] == a["control_id"], a
    ids = [a["control_id"] for a in acks]
    assert sorted(r["control_id"] for r in stored(engine, *ids)) == sorted(ids)


def test_medplum_client_gets_ar_201_for_an_event_the_chart_cannot_apply(engine_process, engine, tmp_path):
    """ADT^A24 (link patients) over Medplum's client: AR for that control id, kept as rejected."""
    path = tmp_path / "a24.hl7"
    path.write_bytes(adt("PEER-A24", "100001", "A24"))
    (a,) = medplum_send(engine_process.ports["adt"], path)
    assert (a["code"], a["acked"]) == ("AR", "PEER-A24")
    assert [r["status"] for r in stored(engine, "PEER-A24")] == ["rejected"]


class PythonHl7Server:
    """python-hl7's asyncio MLLP server in a thread, answering each message with
    ``message.create_ack()`` (python-hl7's ACK, not ours)."""

    def __init__(self):
        self.received: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    async def _handle(self, reader, writer):
        try:
            while not writer.is_closing():
                msg = await reader.readmessage()
                self.received.append(str(msg.segment("MSH")[10]))
                writer.writemessage(msg.create_ack())
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            hl7.mllp.start_hl7_server(self._handle, host="127.0.0.1", port=0)
        )
        self.server = server
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()
        self.loop.run_until_complete(server.wait_closed())

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10), "python-hl7 server did not start"
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_engine_delivers_to_python_hl7_server_and_reads_its_acks():
    """The engine's MLLP sender against python-hl7's server: its AA ACKs (built by python-hl7)
    are matched to each message by MSA-2, on one connection."""
    with PythonHl7Server() as peer:
        sender = MLLPSender("127.0.0.1", peer.port, connect_timeout=5, ack_timeout=10)
        try:
            replies = [sender.send(adt(cid, "M1")) for cid in ("PEER-1", "PEER-2", "PEER-3")]
        finally:
            sender.close()
    assert [(r.code, r.control_id) for r in replies] == [("AA", "PEER-1"), ("AA", "PEER-2"), ("AA", "PEER-3")]
    assert peer.received == ["PEER-1", "PEER-2", "PEER-3"] and sender.connects == 1


@pytest.fixture(scope="module")
def engine_process(shared_db, tmp_path_factory):  # noqa: F811
    with EngineProcess(tmp_path_factory.mktemp("engine"), shared_db[0]) as p:
        yield p


@pytest.fixture
def engine(shared_db):  # noqa: F811
    return shared_db[1]
