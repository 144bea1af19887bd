"""Channel configuration on the wire: `interface run` as a subprocess, two channels sharing one
loopback listener (routed by MSH-3, each with its own identity, ACK timing and fallback
character set), real MLLP clients that read the accept ACK and then the application ACK on the
same connection, and a fake return address (an MLLP peer on loopback)."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from interface.desk import errorqueue
from interface.engine.client import MLLPClient
from interface.store import chart, chart_read, workqueue
from interface.store.schema import messages, work_items
from tests.test_downstream_answers import AnsweringPeer, wait_for
from tests.test_loopback import EngineProcess, shared_db  # noqa: F401 - fixture

TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def peer():
    """The senders' return address: answers every application ACK with AA."""
    with AnsweringPeer(
        lambda ctl, raw: f"MSH|^~\\&|REG|HOSP|INT|HOSP|1||ACK|R{ctl}|P|2.5.1\rMSA|CA|{ctl}\r".encode()
    ) as p:
        yield p


@pytest.fixture(scope="module")
def wire(shared_db, peer, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("wire")
    chans = tmp / "channels"
    chans.mkdir()
    ep = f"tcp:{_free_port()}:interface=127.0.0.1"
    (chans / "reg.yaml").write_text(f"""\
name: reg
listen: {ep}
mapping: adt
mrn: {{authority: HOSP, types: [MR]}}
match: {{sending_application: [REG]}}
identity: {{application: INT, facility: HOSP, refuse_unaddressed: true}}
ack:
  original: on_process
  enhanced: on_commit
  same_connection: true
  application_ack: {{host: 127.0.0.1, port: {peer.port}, timeout_seconds: 5}}
""")
    (chans / "lab.yaml").write_text(f"""\
name: lab
listen: {ep}
mapping: adt
mrn: {{authority: HOSP, types: [MR]}}
match: {{sending_application: [LABSYS]}}
identity: {{application: INT2^1.2.3^ISO}}
fallback_charset: 8859/15
""")
    with EngineProcess(tmp, shared_db[0], channels=chans, listen={"reg": ep, "lab": ep}) as p:
        assert p.ports["reg"] == p.ports["lab"]
        yield p


def _adt(
    cid: str,
    mrn: str,
    *,
    app: str = "REG",
    to: str = "INT",
    family: bytes = b"DOE",
    dob: str = "19800101",
    msh15: str = "",
    msh16: str = "",
) -> bytes:
    msh = f"MSH|^~\\&|{app}|HOSP|{to}|HOSP|20260301100000||ADT^A01^ADT_A01|{cid}|P|2.5.1"
    if msh15 or msh16:
        msh += f"|||{msh15}|{msh16}"
    return (
        b"\r".join(
            [
                msh.encode(),
                b"EVN|A01|20260301100000",
                f"PID|1||{mrn}^^^HOSP^MR||".encode() + family + f"^JANE||{dob}|F".encode(),
                b"PV1|1|I|W1^101^A^HOSP",
            ]
        )
        + b"\r"
    )


def _segs(raw: bytes) -> list[list[str]]:
    return [s.split("|") for s in raw.decode("latin-1").split("\r") if s]


def _row(db, cid: str):
    with db.connect() as conn:
        return conn.execute(
            select(messages).where(messages.c.control_id == cid, messages.c.peer != "application_ack")
        ).one()


def _family(db, mrn: str) -> str:
    with db.connect() as conn:
        return chart_read.get_chart(conn, mrn)["name"]["family"]


def test_two_senders_on_one_listener_get_their_own_channel_and_identity(wire, shared_db):
    """One port, two channels: MSH-3 REG goes to `reg`, LABSYS to `lab`; each ACK's MSH-3/MSH-4
    is its channel's identity; a sender neither takes is refused AR, ERR-3 103 at MSH-3, stored."""
    db = shared_db[1]
    port = wire.ports["reg"]
    with MLLPClient("127.0.0.1", port, timeout=TIMEOUT) as c:
        a = _segs(c.send_raw(_adt("W1", "W100")))
        b = _segs(c.send_raw(_adt("W2", "W200", app="LABSYS")))
        x = _segs(c.send_raw(_adt("W3", "W300", app="NOBODY")))
    assert a[1][:3] == ["MSA", "AA", "W1"] and a[0][2:6] == ["INT", "HOSP", "REG", "HOSP"]
    assert b[1][:3] == ["MSA", "AA", "W2"] and b[0][2:6] == ["INT2^1.2.3^ISO", "", "LABSYS", "HOSP"]
    assert x[1][:3] == ["MSA", "AR", "W3"]
    err = next(s for s in x if s[0] == "ERR")
    assert err[2] == "MSH^1^3" and err[3].startswith("103^") and "NOBODY" in err[8]
    assert (_row(db, "W1").channel, _row(db, "W2").channel) == ("reg", "lab")
    rejected = _row(db, "W3")
    # recorded under the endpoint's first channel (file order: lab.yaml, reg.yaml)
    assert (rejected.channel, rejected.status, rejected.error_code) == ("lab", "rejected", "103")


def test_message_not_addressed_to_the_channel_is_refused(wire, shared_db):
    """identity.refuse_unaddressed: MSH-5 OTHER is not `reg`'s application INT → AR, ERR-3 103
    at MSH-5 with a clear text; the message is stored as rejected, nothing applied."""
    with MLLPClient("127.0.0.1", wire.ports["reg"], timeout=TIMEOUT) as c:
        ack = _segs(c.send_raw(_adt("U1", "U100", to="OTHER")))
    assert ack[1][:3] == ["MSA", "AR", "U1"]
    err = next(s for s in ack if s[0] == "ERR")
    assert err[2] == "MSH^1^5" and err[3].startswith("103^") and "addressed to MSH-5" in err[8]
    row = _row(shared_db[1], "U1")
    assert (row.status, row.error_code) == ("rejected", "103")


def test_ack_timing_per_mode_and_the_application_ack_on_the_same_connection(wire, shared_db):
    """`reg` is {original: on_process, enhanced: on_commit, same_connection: true}: an
    original-mode bad date gets AE with ERR at PID-7; the same error in enhanced mode gets CA,
    then on the same connection the application ACK AE with the same ERR; a good enhanced
    message gets CA then AA. The accept ACK always comes first."""
    with MLLPClient("127.0.0.1", wire.ports["reg"], timeout=TIMEOUT) as c:
        orig = _segs(c.send_raw(_adt("T1", "T100", dob="1980XX01")))
        accept = _segs(c.send_raw(_adt("T2", "T200", dob="1980XX01", msh15="AL", msh16="AL")))
        app = _segs(c.read_frame())
        ok_accept = _segs(c.send_raw(_adt("T3", "T300", msh15="AL", msh16="AL")))
        ok_app = _segs(c.read_frame())
    assert orig[1][:3] == ["MSA", "AE", "T1"]
    assert accept[1][:3] == ["MSA", "CA", "T2"] and not any(s[0] == "ERR" for s in accept)
    assert app[1][:3] == ["MSA", "AE", "T2"] and app[0][8] == "ACK^A01^ACK"
    assert [s for s in app if s[0] == "ERR"] == [s for s in orig if s[0] == "ERR"]
    assert (app[0][2], app[0][3], app[0][14], app[0][15]) == ("INT", "HOSP", "NE", "NE")
    assert ok_accept[1][:3] == ["MSA", "CA", "T3"] and ok_app[1][:3] == ["MSA", "AA", "T3"]
    with shared_db[1].connect() as conn:
        items = conn.execute(
            select(work_items.c.destination, work_items.c.status)
            .join(messages, messages.c.id == work_items.c.message_id)
            .where(messages.c.peer == "application_ack", messages.c.control_id.in_([app[0][9], ok_app[0][9]]))
        ).all()
    assert sorted(items) == [("connection_ack", "done"), ("connection_ack", "done")]


def test_application_ack_for_a_closed_connection_goes_to_the_return_address(wire, shared_db, peer):
    """The sender hangs up before its application ACK is ready (the message waited behind an
    earlier one of its patient in the error queue): once processed, the application ACK goes
    to the return address instead (MSH-15 AL there), never dropped."""
    db = shared_db[1]
    with MLLPClient("127.0.0.1", wire.ports["reg"], timeout=TIMEOUT) as c:
        assert _segs(c.send_raw(_adt("G1", "G100", dob="1980XX01", msh15="AL", msh16="AL")))[1][1] == "CA"
        assert _segs(c.read_frame())[1][:3] == ["MSA", "AE", "G1"]  # on the connection
        assert _segs(c.send_raw(_adt("G2", "G100", msh15="AL", msh16="AL")))[1][1] == "CA"
    # the connection is closed; G2 waits behind G1 (its patient's error): discard G1
    with db.begin() as conn:
        g1 = conn.execute(
            select(work_items.c.id)
            .join(messages, messages.c.id == work_items.c.message_id)
            .where(messages.c.control_id == "G1", work_items.c.destination == "store")
        ).scalar_one()
        errorqueue.discard_item(
            conn, g1, user="test", reason="bad date, sent again", now=datetime.now(timezone.utc)
        )
    assert wait_for(peer, lambda: any(b"MSA|AA|G2" in m for m in peer.messages)), peer.messages
    sent = next(m for m in peer.messages if b"MSA|AA|G2" in m)
    assert _segs(sent)[0][14] == "AL"
    assert _family(db, "G100") == "DOE"


def test_fallback_character_set_per_channel_on_the_wire(wire, shared_db):
    """No MSH-18: 0x92 to `reg` (default Windows-1252) is ’; 0xA4 to `lab` (8859/15) is €."""
    with MLLPClient("127.0.0.1", wire.ports["reg"], timeout=TIMEOUT) as c:
        assert _segs(c.send_raw(_adt("F1", "F100", family=b"O\x92BRIEN")))[1][1] == "AA"
        assert _segs(c.send_raw(_adt("F2", "F200", app="LABSYS", family=b"EUR\xa4")))[1][1] == "AA"
    assert _family(shared_db[1], "F100") == "O\u2019BRIEN"
    assert _family(shared_db[1], "F200") == "EUR\u20ac"


def test_interface_send_client_sets_aside_application_acks_of_earlier_messages(wire):
    """MLLPClient.send on a same_connection channel: an application ACK for an earlier message
    that arrives while waiting for the next one's accept ACK is kept in ``late``, never taken
    for that message's ACK."""
    with MLLPClient("127.0.0.1", wire.ports["reg"], timeout=TIMEOUT) as c:
        results = [c.send(_adt(f"S{i}", f"S{i}00", msh15="AL", msh16="AL")) for i in range(3)]
        while len(c.late) < 3:  # the last application ACK follows its accept ACK
            c.late.append(c.read_frame())
    assert [(r.control_id, r.code) for r in results] == [("S0", "CA"), ("S1", "CA"), ("S2", "CA")]
    assert sorted(_segs(f)[1][2] for f in c.late) == ["S0", "S1", "S2"]
    assert {_segs(f)[1][1] for f in c.late} == {"AA"}
