"""Enhanced acknowledgement mode end to end: the accept ACK (CA) once committed, then the
application ACK (MSH-16 AL/ER/SU) once processed, sent as a new message to the channel's return
address (``ack.application_ack``), queued as destination ``application_ack`` with its retry."""

from __future__ import annotations

from sqlalchemy import select

from interface.engine.outbound import MLLPSender
from interface.store.schema import messages
from tests.test_destinations import FakeSender, Rig, adt, channel
from tests.test_outbound import FlakyPeer


def _enhanced(port=9, **ack):
    return channel(
        ack={
            "application_ack": {
                "host": "127.0.0.1",
                "port": port,
                "timeout_seconds": 2,
                "retry": {"initial_delay_seconds": 5, "jitter": 0},
            },
            **ack,
        }
    )


def _segments(raw: bytes) -> list[list[str]]:
    return [s.split("|") for s in raw.decode().split("\r") if s]


def test_accept_ack_then_application_ack_to_the_return_address(engine):
    """MSH-15 AL / MSH-16 AL: CA when stored; after processing, an application ACK (AA, MSA-2 =
    the original MSH-10) goes to the return address as a message of its own, and asks for an
    accept ACK back (MSH-15 AL, MSH-16 NE)."""
    with FlakyPeer(lambda n, ctl: "ack") as peer:
        rig = Rig(engine, _enhanced(peer.port))
        rig.out.sender_factory = lambda d: MLLPSender(d.host, d.port, ack_timeout=d.timeout_seconds)
        out = rig.send(adt("E1", "M1", "A01", msh15="AL", msh16="AL"))
        # applied inline (apply: inline); the application ACK is queued, never sent inline
        assert out.status == "processed" and out.ack_code == "CA"
        assert peer.received == []  # nothing before the outbound worker runs
        rig.drain()
        rig.out.close()
    assert len(peer.messages) == 1
    segs = _segments(peer.messages[0])
    msh, msa = segs[0], segs[1]
    assert msh[8] == "ACK^A01^ACK" and (msh[2], msh[4]) == ("INT", "REG")  # MSH-3/5 swapped
    assert (msh[14], msh[15]) == ("AL", "NE")
    assert msa[:3] == ["MSA", "AA", "E1"]
    item = rig.items("application_ack")[0]
    assert item.status == "done" and item.key == "out:adt/application_ack|mrn:M1"
    with engine.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.id == item.message_id)).one()
        orig = conn.execute(select(messages.c.id).where(messages.c.control_id == "E1")).scalar_one()
    assert row.parent_id == orig and row.peer == "application_ack" and row.raw == peer.messages[0]


def test_er_sends_only_on_error_with_err_at_the_field(engine):
    """MSH-16 ER: nothing for a success; AE with the ERR location for a mapping error."""
    rig = Rig(engine, _enhanced())
    rig.send(adt("E1", "M1", "A01", msh15="AL", msh16="ER"))
    rig.send(adt("E2", "M2", "A01", msh15="AL", msh16="ER", dob="1980XX01"))
    rig.drain()
    assert rig.sender.sent == [rig.items("application_ack")[0].control_id]
    with engine.connect() as conn:
        raw = conn.execute(select(messages.c.raw).where(messages.c.peer == "application_ack")).scalar_one()
    segs = _segments(raw)
    assert segs[1][:3] == ["MSA", "AE", "E2"]
    assert segs[2][0] == "ERR" and segs[2][2] == "PID^1^7^1" and segs[2][3].startswith("102^")


def test_su_sends_only_on_success_and_ne_never(engine):
    """MSH-16 SU: AA for a success, nothing for an error; NE or empty: never."""
    rig = Rig(engine, _enhanced())
    rig.send(adt("S1", "M1", "A01", msh15="AL", msh16="SU"))
    rig.send(adt("S2", "M2", "A01", msh15="AL", msh16="SU", dob="1980XX01"))
    rig.send(adt("N1", "M3", "A01", msh15="AL", msh16="NE"))
    rig.send(adt("N2", "M4", "A01", msh15="AL"))
    rig.send(adt("O1", "M5", "A01"))  # original mode
    rig.drain()
    with engine.connect() as conn:
        raws = (
            conn.execute(select(messages.c.raw).where(messages.c.peer == "application_ack")).scalars().all()
        )
    assert [_segments(r)[1][:3] for r in raws] == [["MSA", "AA", "S1"]]


def test_no_return_address_or_original_mode_sends_nothing(engine):
    """Without ack.application_ack, or with mode: original, no application ACK is queued."""
    for ch in (
        channel(),
        channel(name="orig", ack={"mode": "original", "application_ack": {"host": "127.0.0.1", "port": 9}}),
    ):
        rig = Rig(engine, ch)
        out = rig.send(adt(f"{ch.name}1", "M1", "A01", msh15="AL", msh16="AL"))
        assert out.ack_code == ("AA" if ch.name == "orig" else "CA")
        rig.drain()
    assert [i.destination for i in Rig(engine, channel()).items()] == ["store", "store"]


def test_application_ack_retries_without_blocking_the_store(engine):
    """The return address is down: the application ACK retries on its own policy and lane;
    the patient's next message is still applied to the chart."""
    up = {"v": False}
    rig = Rig(engine, _enhanced(), FakeSender(lambda ctl: "AA" if up["v"] else None))
    rig.send(adt("E1", "M1", "A01", msh15="AL", msh16="AL"))
    rig.send(adt("E2", "M1", "A08", msh15="AL", msh16="AL"))
    rig.drain()
    assert rig.status("store") == {"E1": "done", "E2": "done"}
    acks = rig.items("application_ack")
    assert [(i.status, i.attempts) for i in acks] == [("pending", 1), ("pending", 0)]
    up["v"] = True
    rig.clock.advance(5)
    rig.drain()
    assert [i.status for i in rig.items("application_ack")] == ["done", "done"]
    assert len(rig.sender.sent) == 2


def test_on_process_enhanced_queues_the_application_ack_in_the_same_transaction(engine):
    """ack: on_process in enhanced mode: CE with ERR now, and the AE application ACK queued."""
    rig = Rig(engine, _enhanced(when="on_process"))
    out = rig.send(adt("P1", "M1", "A01", msh15="AL", msh16="AL", dob="1980XX01"))
    assert out.ack_code == "CE" and b"ERR||PID^1^7^1|102^" in out.ack
    acks = rig.items("application_ack")
    assert len(acks) == 1 and acks[0].status == "pending"
