"""Engine.receive, raw bytes in -> (ACK bytes, rows) out: one test per row of the outcome table."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from interface.config.channels import Channel
from interface.engine.inbound import Engine
from interface.engine.outcome import Inbound
from interface.hl7.errors import DataError, Location
from interface.hl7.message import decode, header_from_text, split_messages
from interface.mapping.validation import structure_validator, validate_structure
from interface.store.schema import messages, work_items, work_keys
from tests.conftest import corpus_files

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def channel(**kw) -> Channel:
    base = dict(
        name="adt",
        listen="tcp:0:interface=127.0.0.1",
        accept=["ADT^*"],
        mapping="adt",
        mrn={"authority": "HOSP", "types": ["MR"]},
    )
    base.update(kw)
    return Channel.model_validate(base)


def adt(
    ctl="C1",
    *,
    trigger="A01",
    mrn="100001",
    family="DOE",
    version="2.5.1",
    msh15="",
    msh16="",
    charset="",
    code="ADT",
    sep="\r",
) -> bytes:
    f = [
        "MSH",
        "^~\\&",
        "REG",
        "HOSP",
        "IFACE",
        "HOSP",
        "20260101120000",
        "",
        f"{code}^{trigger}",
        ctl,
        "P",
        version,
        "",
        "",
        msh15,
        msh16,
        "",
        charset,
    ]
    segs = [
        "|".join(f).rstrip("|"),
        f"EVN|{trigger}|20260101120000",
        f"PID|1||{mrn}^^^HOSP^MR||{family}^JOHN||19800101|M",
        "PV1|1|I|WARD1",
    ]
    return (sep.join(segs) + sep).encode("utf-8")


def rows(db) -> list[dict]:
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(messages).order_by(messages.c.id))]


def items(db) -> list[dict]:
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(work_items).order_by(work_items.c.id))]


def count(db, table) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def seg(ack: bytes, name: str) -> list[str]:
    for s in ack.decode("utf-8").split("\r"):
        if s.startswith(name):
            return s.split("|")
    raise AssertionError(f"no {name} in {ack!r}")


@pytest.fixture
def eng(engine):
    return Engine(engine, clock=lambda: NOW)


# -- committed ----------------------------------------------------------------------------------


def test_accepted_is_stored_with_work_item_then_aa(eng, engine):
    """Committed: raw + header columns + ACK + work item keyed by the MRN; AA echoes MSH-10."""
    raw = adt("C1")
    out = eng.receive(channel(), raw, peer="127.0.0.1:5000")
    assert out.status == "accepted" and out.ack_code == "AA" and out.control_id == "C1"
    assert seg(out.ack, "MSA")[1:3] == ["AA", "C1"]
    [row] = rows(engine)
    assert row["raw"] == raw and row["ack"] == out.ack and row["ack_code"] == "AA"
    assert (row["status"], row["control_id"], row["message_type"], row["patient_id"], row["peer"]) == (
        "accepted",
        "C1",
        "ADT^A01",
        "100001",
        "127.0.0.1:5000",
    )
    assert row["dedup_key"] == "adt|REG|HOSP|C1" and row["id"] == out.message_id
    [item] = items(engine)
    assert (item["destination"], item["status"], item["key"]) == ("store", "pending", "mrn:100001")
    assert count(engine, work_keys) == 1


def test_accepted_enhanced_mode_is_ca(eng):
    out = eng.receive(channel(), adt(msh15="AL", msh16="NE"))
    assert out.ack_code == "CA" and seg(out.ack, "MSA")[1] == "CA"


def test_accepted_with_lf_separators(eng, engine):
    out = eng.receive(channel(), adt(sep="\n"))
    assert out.ack_code == "AA" and rows(engine)[0]["patient_id"] == "100001"


def test_merge_holds_both_keys(eng, engine):
    raw = adt("M1", trigger="A40", mrn="200") + b"MRG|100^^^HOSP^MR\r"
    assert eng.receive(channel(), raw).ack_code == "AA"
    with engine.connect() as conn:
        keys = sorted(r.key for r in conn.execute(select(work_keys)))
    assert keys == ["mrn:100", "mrn:200"]


# -- duplicates ---------------------------------------------------------------------------------


def test_duplicate_same_body_gets_stored_ack_byte_for_byte_and_changes_nothing(engine):
    first = Engine(engine, clock=lambda: NOW).receive(channel(), adt("D1"))
    later = Engine(engine, clock=lambda: datetime(2026, 11, 23, tzinfo=timezone.utc))
    before = (rows(engine), items(engine))
    again = later.receive(channel(), adt("D1"))
    assert again.status == "duplicate"
    assert again.ack == first.ack  # byte for byte, old timestamp and control id included
    assert again.ack_code == "AA" and again.message_id == first.message_id
    assert (rows(engine), items(engine)) == before


def test_duplicate_within_one_group(eng, engine):
    """The same message twice in one group commit: stored once, same ACK for both."""
    a, b = eng.receive_many([Inbound(channel(), adt("G1")), Inbound(channel(), adt("G1"))])
    assert a.status == "accepted" and b.status == "duplicate" and a.ack == b.ack
    assert count(engine, messages) == 1 and count(engine, work_items) == 1


def test_same_control_id_from_other_sender_is_not_a_duplicate(eng, engine):
    eng.receive(channel(), adt("S1"))
    other = adt("S1").replace(b"|REG|", b"|OTHER|", 1)
    assert eng.receive(channel(), other).status == "accepted"
    assert count(engine, messages) == 2


def test_same_control_id_different_body_quarantined_and_ar(eng, engine):
    """Same (channel, MSH-3, MSH-4, MSH-10), different body: raw kept, quarantined, AR ERR 205."""
    eng.receive(channel(), adt("Q1", family="DOE"))
    raw2 = adt("Q1", family="SMITH")
    out = eng.receive(channel(), raw2)
    assert out.status == "quarantined" and out.ack_code == "AR"
    err = seg(out.ack, "ERR")
    assert err[2] == "MSH^1^10" and err[3].startswith("205^")
    r = rows(engine)[1]
    assert r["raw"] == raw2 and r["status"] == "quarantined" and r["dedup_key"] is None
    it = items(engine)[1]
    assert (it["status"], it["reason"], it["destination"]) == ("error", "duplicate_conflict", "quarantine")
    assert count(engine, work_keys) == 1  # the quarantined item blocks no patient


def test_quarantine_enhanced_mode_is_cr(eng):
    eng.receive(channel(), adt("Q2", msh15="AL"))
    out = eng.receive(channel(), adt("Q2", msh15="AL", family="OTHER"))
    assert out.ack_code == "CR"


# -- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b"hello world", b"PID|1||100", b"MSH", b"MSH|^~\\&ABCDEF|x", b"\xff\xfe\x00M\x00S\x00H"]
)
def test_unparseable_rejected_with_raw_kept(eng, engine, raw):
    """No MSH / bad encoding characters: AR with ERR 100, the raw bytes stored as received."""
    out = eng.receive(channel(), raw)
    assert out.status == "rejected" and out.ack_code == "AR"
    assert seg(out.ack, "MSA")[1] == "AR"
    assert seg(out.ack, "ERR")[3].startswith("100^")
    [row] = rows(engine)
    assert row["raw"] == raw and row["status"] == "rejected" and row["error_code"] == "100"
    [item] = items(engine)  # in the error queue, never applied
    assert (item["destination"], item["status"], item["reason"]) == ("rejected", "error", "unparseable")


def test_empty_msh10_rejected_101(eng, engine):
    out = eng.receive(channel(), adt(""))
    assert out.status == "rejected" and out.ack_code == "AR"
    err = seg(out.ack, "ERR")
    assert err[2] == "MSH^1^10" and err[3].startswith("101^")
    assert rows(engine)[0]["raw"] == adt("") and rows(engine)[0]["dedup_key"] is None


def test_unsupported_message_type_200(eng, engine):
    raw = adt("U1", code="ORU", trigger="R01")
    out = eng.receive(channel(), raw)
    assert out.status == "rejected" and out.ack_code == "AR"
    assert seg(out.ack, "ERR")[3].startswith("200^")
    assert rows(engine)[0]["raw"] == raw
    [item] = items(engine)
    assert (item["destination"], item["status"], item["reason"], item["error_location"]) == (
        "rejected",
        "error",
        "unsupported_event",
        "MSH-9",
    )


def test_unsupported_event_201(eng):
    out = eng.receive(channel(accept=["ADT^A01"]), adt("U2", trigger="A08"))
    assert out.status == "rejected" and seg(out.ack, "ERR")[3].startswith("201^")


def test_rejection_in_old_version_uses_err1(eng):
    out = eng.receive(channel(), adt("U3", code="ORU", trigger="R01", version="2.3"))
    assert seg(out.ack, "ERR")[1].startswith("MSH^1^9^200&")


def test_undecodable_bytes_kept_raw_and_reported(eng, engine):
    """Bytes invalid in the declared charset: accepted, raw kept exactly, warning stored and in ERR (W)."""
    raw = adt("W1", charset="UNICODE UTF-8").replace(b"DOE", b"D\xffE")
    out = eng.receive(channel(), raw)
    assert out.ack_code == "AA"
    err = seg(out.ack, "ERR")
    assert err[4] == "W"
    row = rows(engine)[0]
    assert row["raw"] == raw and "UNICODE UTF-8" in row["warning"]


# -- cannot commit ------------------------------------------------------------------------------


class BrokenDB:
    """A database that fails every transaction (down, disk full)."""

    def begin(self):
        raise OperationalError("INSERT INTO messages", {}, Exception("disk full"))


@pytest.mark.parametrize("msh15,code", [("", "AE"), ("AL", "CE")])
def test_database_failure_is_ae_never_aa(msh15, code):
    eng = Engine(BrokenDB(), clock=lambda: NOW)
    outs = eng.receive_many([Inbound(channel(), adt("F1", msh15=msh15)), Inbound(channel(), b"junk")])
    for out, expected in zip(outs, (code, "AE")):  # no header: original mode
        assert out.status == "error" and out.ack_code == expected and out.message_id is None
        assert seg(out.ack, "MSA")[1] == expected
        assert seg(out.ack, "ERR")[3].startswith("207^")


def test_database_failure_with_ne_still_answers_error(eng):
    """MSH-15 NE asks for no accept ACK, but a commit failure is still reported (never silent AA)."""
    out = Engine(BrokenDB(), clock=lambda: NOW).receive(channel(), adt("F2", msh15="NE"))
    assert out.ack_code == "CE" and out.status == "error"


# -- enhanced mode conditions ---------------------------------------------------------------------


def test_msh15_ne_stores_without_ack(eng, engine):
    out = eng.receive(channel(), adt("N1", msh15="NE"))
    assert out.status == "accepted" and out.ack is None and out.ack_code is None
    assert rows(engine)[0]["ack"] is None


def test_msh15_er_answers_only_errors(eng):
    assert eng.receive(channel(), adt("E1", msh15="ER")).ack is None
    rej = eng.receive(channel(), adt("E2", msh15="ER", code="ORU", trigger="R01"))
    assert rej.ack_code == "CR"


def test_msh15_su_answers_only_success(eng):
    assert eng.receive(channel(), adt("S1", msh15="SU")).ack_code == "CA"
    assert eng.receive(channel(), adt("S2", msh15="SU", code="ORU", trigger="R01")).ack is None


def test_original_mode_channel_ignores_msh15(eng):
    out = eng.receive(channel(ack={"mode": "original"}), adt("O1", msh15="NE"))
    assert out.ack_code == "AA"


# -- batches ------------------------------------------------------------------------------------


def test_batch_one_frame_many_messages(eng, engine):
    """A framed FHS/BHS batch: each message stored with its index; the answer is BHS + ACKs + BTS."""
    body = (
        b"FHS|^~\\&|REG\rBHS|^~\\&|REG\r"
        + adt("B1")
        + adt("B2", mrn="2")
        + adt("B3", code="ORU", trigger="R01")
        + b"BTS|3\rFTS|1\r"
    )
    out = eng.receive(channel(), body)
    assert out.ack.startswith(b"BHS|") and out.ack.endswith(b"BTS|3\r")
    assert out.ack_code == "AR" and out.status == "rejected"
    msas = [s for s in out.ack.decode().split("\r") if s.startswith("MSA")]
    assert msas == [
        "MSA|AA|B1",
        "MSA|AA|B2",
        "MSA|AR|B3|channel adt does not accept message type ORU\\S\\R01",
    ]
    r = rows(engine)
    assert [x["batch_index"] for x in r] == [0, 1, 2]
    assert [x["status"] for x in r] == ["accepted", "accepted", "rejected"]
    assert r[0]["raw"].startswith(b"MSH|") and b"PID|1||100001" in r[0]["raw"]


def test_batch_without_msh_rejected_raw_kept(eng, engine):
    raw = b"BHS|^~\\&\rEVN|A01\rPID|1||1\rBTS|1\r"
    out = eng.receive(channel(), raw)
    assert out.ack_code == "AR" and seg(out.ack, "ERR")[3].startswith("100^")
    assert rows(engine)[0]["raw"] == raw


def test_batch_with_undecodable_bytes_keeps_member_raw_bytes(eng, engine):
    m1 = adt("BB1", charset="UNICODE UTF-8").replace(b"DOE", b"D\xe9E")
    raw = b"BHS|^~\\&\r" + m1 + adt("BB2") + b"BTS|2\r"
    eng.receive(channel(), raw)
    r = rows(engine)
    assert r[0]["raw"] == m1 and r[0]["warning"]
    assert r[1]["raw"] == adt("BB2")


# -- ack on process ---------------------------------------------------------------------------


class FakeProcessor:
    def __init__(self, error=None):
        self.error = error

    def process_now(self, conn, item_ids, now):
        return {i: self.error for i in item_ids}

    def unapplied_event(self, ch, trigger):
        return None


def test_on_process_success_aa_processed(engine):
    eng = Engine(engine, clock=lambda: NOW, processor=FakeProcessor())
    out = eng.receive(channel(ack={"when": "on_process"}), adt("P1"))
    assert out.status == "processed" and out.ack_code == "AA"


def test_on_process_mapping_error_is_ae_with_location(engine):
    """Mapping/data error with on_process: raw + error stored, AE with ERR at the field."""
    err = DataError("birth date is not a date", Location("PID", 1, 7))
    eng = Engine(engine, clock=lambda: NOW, processor=FakeProcessor(err))
    raw = adt("P2")
    out = eng.receive(channel(ack={"when": "on_process"}), raw)
    assert out.status == "error" and out.ack_code == "AE"
    e = seg(out.ack, "ERR")
    assert e[2] == "PID^1^7" and e[3].startswith("102^")
    row = rows(engine)[0]
    assert row["raw"] == raw and row["ack"] == out.ack and row["ack_code"] == "AE"
    again = eng.receive(channel(ack={"when": "on_process"}), raw)
    assert again.status == "duplicate" and again.ack == out.ack


# -- structural validation (channel validation: structure) ----------------------------------------


def test_structure_validation_rejects_missing_segment(engine):
    eng = Engine(engine, clock=lambda: NOW, validator=structure_validator)
    raw = adt("V1").replace(b"EVN|A01|20260101120000\r", b"")
    out = eng.receive(channel(validation="structure"), raw)
    assert out.status == "rejected" and out.ack_code == "AE"  # content error: AE, not AR
    e = seg(out.ack, "ERR")
    assert e[2] == "EVN^1" and e[3].startswith("100^")
    assert rows(engine)[0]["raw"] == raw


def test_structure_validation_required_field_101_and_all_errors(engine):
    eng = Engine(engine, clock=lambda: NOW, validator=structure_validator)
    raw = adt("V2").replace(b"PV1|1|I|WARD1", b"PV1|1||WARD1").replace(b"||DOE^JOHN", b"||")
    out = eng.receive(channel(validation="structure"), raw)
    assert (
        eng.receive(
            channel(validation="structure"), adt("V2E", msh15="AL").replace(b"PV1|1|I|WARD1", b"PV1|1||WARD1")
        ).ack_code
        == "CE"
    )
    errs = [s.split("|") for s in out.ack.decode().split("\r") if s.startswith("ERR")]
    assert [(e[2], e[3][:3]) for e in errs] == [("PID^1^5", "101"), ("PV1^1^2", "101")]


def test_structure_validation_passes_valid_and_ignored_when_channel_off(engine):
    eng = Engine(engine, clock=lambda: NOW, validator=structure_validator)
    assert eng.receive(channel(validation="structure"), adt("V3")).ack_code == "AA"
    bad = adt("V4").replace(b"EVN|A01|20260101120000\r", b"")
    assert eng.receive(channel(), bad).ack_code == "AA"


def test_structure_validation_event_to_structure_and_z_segments():
    """A04 validates against ADT_A01 (table 0354); Z-segments anywhere are allowed."""
    text = adt("V5", trigger="A04").decode().replace("PV1|", "ZPD|x\rPV1|")
    assert validate_structure(text, header_from_text(text)) == []
    text = adt("V6", trigger="A04", version="9.9").decode()
    assert validate_structure(text, header_from_text(text)) == []  # unknown version: not judged


def test_structure_validation_unexpected_segment():
    text = adt("V7").decode() + "PID|2||5^^^HOSP^MR||X^Y\r"
    probs = validate_structure(text, header_from_text(text))
    assert [(p.code, p.location.segment, p.location.sequence) for p in probs] == [("100", "PID", 2)]


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_structure_validator_never_raises_on_corpus(path):
    d = decode(path.read_bytes())
    try:
        texts = split_messages(d.text)
    except Exception:
        return
    for t in texts:
        for p in structure_validator(t, header_from_text(t)):
            assert p.code in ("100", "101") and p.location is not None


# -- the corpus ---------------------------------------------------------------------------------


def test_every_corpus_message_gets_an_answer(engine):
    """Every corpus file through Engine.receive: no exception, stored raw, an ACK unless MSH-15 NE."""
    eng = Engine(engine, clock=lambda: NOW, validator=structure_validator)
    ch = channel(accept=["*"], validation="structure")
    files = corpus_files()
    for path in files:
        raw = path.read_bytes()
        out = eng.receive(ch, raw)
        assert out.status in ("accepted", "duplicate", "quarantined", "rejected"), path.name
        if out.ack is None:
            assert header_from_text(split_messages(decode(raw).text)[0]).accept_ack_type in ("NE", "ER"), (
                path.name
            )
        else:
            assert b"MSA" in out.ack
    assert count(engine, messages) >= len(files) - 5


def test_structure_validation_missing_group_points_at_its_first_required_segment():
    text = "MSH|^~\\&|LAB|H|IF|H|20260101||ORU^R01^ORU_R01|R1|P|2.5.1\rPID|1||1^^^HOSP^MR||A^B\r"
    probs = validate_structure(text, header_from_text(text))
    assert [(p.code, p.location.segment) for p in probs] == [("100", "OBR")]
    assert "ORU_R01_ORDER_OBSERVATION" in probs[0].text


def test_batch_answer_uses_batch_delimiters(eng):
    m = "MSH#!@%*#REG#HOSP#IF#HOSP#2026##ADT!A01#CD1#P#2.5\rEVN#A01#2026\rPID#1##7!!!HOSP!MR\r"
    out = eng.receive(channel(), ("BHS#!@%*\r" + m + "BTS#1\r").encode())
    assert out.ack.startswith(b"BHS#!@%*#####2026") and out.ack.endswith(b"BTS#1\r")
    assert b"\rMSA#AA#CD1\r" in out.ack
