"""ACK timing and code family per channel: ``ack.when`` (on_commit: once stored; on_process:
after the chart write, mapping errors as AE/CE with ERR) and ``ack.mode`` (auto follows MSH-15/16,
original AA/AE/AR, enhanced CA/CE/CR), through Engine.receive."""

from __future__ import annotations

from sqlalchemy import select

from interface.store.schema import messages
from tests.test_destinations import Rig, adt, channel


def test_codes_by_mode(engine):
    """auto: AA for original-mode senders, CA when MSH-15/16 is valued; original and enhanced
    force their family."""
    cases = [("auto", "", "AA"), ("auto", "AL", "CA"), ("original", "AL", "AA"), ("enhanced", "", "CA")]
    for n, (mode, msh15, code) in enumerate(cases):
        rig = Rig(engine, channel(name=f"c{n}", ack={"mode": mode}))
        out = rig.send(adt(f"K{n}", "M1", "A01", msh15=msh15))
        # on_commit: the ACK is the accept ACK whether or not the item was applied inline
        assert out.status in ("accepted", "processed") and out.ack_code == code, (mode, msh15)
        assert f"MSA|{code}|K{n}".encode() in out.ack


def test_msh15_ne_and_er_send_no_accept_ack_on_success(engine):
    """MSH-15 NE (never) or ER (errors only): stored, no accept ACK for a success."""
    rig = Rig(engine, channel())
    for cid, msh15 in (("N1", "NE"), ("R1", "ER")):
        out = rig.send(adt(cid, "M1", "A01", msh15=msh15))
        assert out.status in ("accepted", "processed") and out.ack is None
    with engine.connect() as conn:
        assert conn.execute(select(messages.c.control_id).order_by(messages.c.id)).scalars().all() == [
            "N1",
            "R1",
        ]


def test_on_process_error_in_enhanced_mode_is_ce(engine):
    """on_process + enhanced sender: a mapping error is CE with ERR at the field."""
    rig = Rig(engine, channel(ack={"when": "on_process"}))
    out = rig.send(adt("P1", "M1", "A01", msh15="AL", dob="1980XX01"))
    assert out.status == "error" and out.ack_code == "CE"
    assert b"ERR||PID^1^7^1|102^" in out.ack


def test_on_process_behind_a_failed_item_acks_as_stored(engine):
    """on_process: a message queued behind its patient's failed message cannot be applied yet:
    it is ACKed as stored (AA) and waits in order; another patient is processed at once."""
    rig = Rig(engine, channel(ack={"when": "on_process"}))
    assert rig.send(adt("P1", "M1", "A01", dob="1980XX01")).ack_code == "AE"
    out = rig.send(adt("P2", "M1", "A08"))
    assert (out.status, out.ack_code) == ("accepted", "AA")
    assert rig.send(adt("Q1", "M2", "A01")).status == "processed"
    assert rig.status("store") == {"P1": "error", "P2": "pending", "Q1": "done"}


def test_on_process_duplicate_gets_the_stored_ack(engine):
    """A resend after an on_process AE gets the same AE bytes, and nothing is applied twice."""
    rig = Rig(engine, channel(ack={"when": "on_process"}))
    first = rig.send(adt("D1", "M1", "A01", dob="1980XX01"))
    again = rig.send(adt("D1", "M1", "A01", dob="1980XX01"))
    assert again.status == "duplicate" and again.ack == first.ack
    assert len(rig.items("store")) == 1
