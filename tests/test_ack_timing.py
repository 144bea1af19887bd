"""ACK timing per acknowledgment mode (HL7 v2.5.1 2.9): ``ack: {original: on_process,
enhanced: on_commit}`` gives original-mode senders AE for content errors after processing, and
enhanced-mode senders CA on commit with the processing outcome in the application ACK (AE with
the same ERR); ``ack.when`` alone still sets both."""

from __future__ import annotations

from sqlalchemy import select

from interface.config.channels import Ack, Channel
from interface.hl7.message import header_from_text
from interface.store.schema import messages
from tests.test_destinations import Rig, adt, channel


def _per_mode(**ack):
    return channel(
        ack={
            "original": "on_process",
            "enhanced": "on_commit",
            "application_ack": {"host": "127.0.0.1", "port": 9},
            **ack,
        }
    )


def _err(raw: bytes) -> list[str]:
    return [s for s in raw.decode().split("\r") if s.startswith("ERR")]


def test_original_mode_gets_ae_after_processing(engine):
    """Original mode (MSH-15/16 empty) on an `original: on_process` channel: AE with ERR at
    PID-7 for a bad date, AA once the chart is written for a good message."""
    rig = Rig(engine, _per_mode())
    bad = rig.send(adt("O1", "M1", "A01", dob="1980XX01"))
    good = rig.send(adt("O2", "M2", "A01"))
    assert (bad.ack_code, bad.status) == ("AE", "error")
    assert _err(bad.ack)[0].startswith("ERR||PID^1^7^1|102^")
    assert (good.ack_code, good.status) == ("AA", "processed")
    assert rig.items("application_ack") == []  # original mode: the ACK was the application ACK


def test_enhanced_mode_gets_ca_on_commit_and_the_outcome_in_the_application_ack(engine):
    """Enhanced mode on the same channel: CA (no ERR) although the content is bad; the
    application ACK is AE with the very ERR an original-mode sender got in its ACK."""
    rig = Rig(engine, _per_mode())
    original = rig.send(adt("O1", "M1", "A01", dob="1980XX01"))
    out = rig.send(adt("E1", "M2", "A01", msh15="AL", msh16="AL", dob="1980XX01"))
    assert out.ack_code == "CA" and b"ERR" not in out.ack
    rig.drain()
    with engine.connect() as conn:
        app = conn.execute(select(messages.c.raw).where(messages.c.peer == "application_ack")).scalar_one()
    segs = app.decode().split("\r")
    assert segs[1].split("|")[:3] == ["MSA", "AE", "E1"]
    assert _err(app) == _err(original.ack)


def test_msh15_msh16_decide_what_is_sent(engine):
    """Table 0155 on an `enhanced: on_commit` channel: MSH-15 NE → no accept ACK; ER → none on
    success; SU → CA; MSH-16 SU → an application ACK only for the success, ER only for the error."""
    rig = Rig(engine, _per_mode())
    assert rig.send(adt("N1", "M1", "A01", msh15="NE", msh16="AL")).ack is None
    assert rig.send(adt("R1", "M2", "A01", msh15="ER", msh16="AL")).ack is None
    assert rig.send(adt("S1", "M3", "A01", msh15="SU", msh16="SU")).ack_code == "CA"
    assert rig.send(adt("S2", "M4", "A01", msh15="AL", msh16="SU", dob="1980XX01")).ack_code == "CA"
    assert rig.send(adt("E2", "M5", "A01", msh15="AL", msh16="ER", dob="1980XX01")).ack_code == "CA"
    assert rig.send(adt("E3", "M6", "A01", msh15="AL", msh16="ER")).ack_code == "CA"
    rig.drain()
    with engine.connect() as conn:
        raws = (
            conn.execute(
                select(messages.c.raw).where(messages.c.peer == "application_ack").order_by(messages.c.id)
            )
            .scalars()
            .all()
        )
    assert [r.decode().split("\r")[1].split("|")[1:3] for r in raws] == [
        ["AA", "N1"],
        ["AA", "R1"],
        ["AA", "S1"],
        ["AE", "E2"],
    ]


def test_the_old_when_still_sets_both_modes(engine):
    """`ack: {when: on_process}` (no per-mode keys): both modes ACK after processing, so an
    enhanced sender gets CE with the ERR, as before."""
    rig = Rig(engine, channel(ack={"when": "on_process"}))
    assert rig.send(adt("O1", "M1", "A01", dob="1980XX01")).ack_code == "AE"
    out = rig.send(adt("E1", "M2", "A01", msh15="AL", msh16="AL", dob="1980XX01"))
    assert out.ack_code == "CE" and b"ERR||PID^1^7^1|102^" in out.ack


def test_reversed_per_mode_setting(engine):
    """`{original: on_commit, enhanced: on_process}`: AA on commit for original mode (the error
    goes to the error queue), CE after processing for enhanced mode."""
    rig = Rig(engine, channel(ack={"original": "on_commit", "enhanced": "on_process"}))
    assert rig.send(adt("O1", "M1", "A01", dob="1980XX01")).ack_code == "AA"
    assert rig.send(adt("E1", "M2", "A01", msh15="AL", dob="1980XX01")).ack_code == "CE"
    rig.drain()
    assert rig.status("store") == {"O1": "error", "E1": "error"}


def test_timing_follows_mode_and_msh15_16():
    """Ack.timing: mode auto reads MSH-15/16; mode original/enhanced forces the family."""
    orig = header_from_text("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5.1")
    enh = header_from_text("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5.1|||AL|NE")
    a = Ack(original="on_process", enhanced="on_commit")
    assert (a.timing(orig), a.timing(enh), a.timing(None)) == ("on_process", "on_commit", "on_process")
    assert Ack(mode="enhanced", original="on_process").timing(orig) == "on_commit"
    assert Ack(mode="original", when="on_process", enhanced="on_commit").timing(enh) == "on_process"
    assert "original" in Channel.model_json_schema()["$defs"]["Ack"]["properties"]
