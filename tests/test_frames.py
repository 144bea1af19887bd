"""Frames, headers and batches (docs/hl7-conformance.md): raw bytes in -> ACK frames and rows out.

One frame one message (several MSH without FHS/BHS are split, or refused whole), MSH-11
processing id and MSH-12 version, every rejection in the error queue and resubmitted through
the engine again, BTS-1/FTS-1 counts, and a frame that breaks the reader or the ACK builder
decided on its own, never its commit group's.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from interface.desk import errorqueue
from interface.engine.inbound import Engine
from interface.engine.outcome import Inbound
from interface.engine.writer import GroupCommitWriter
from interface.hl7 import ack as acks
from interface.store import chart, chart_read, journal, workqueue
from interface.store.schema import messages, work_items

from .test_destinations import Rig, adt, channel


def msh_of(data: bytes, name: str = "MSA") -> list[str]:
    for s in data.decode("utf-8", "replace").split("\r"):
        if s.startswith(name):
            return s.split("|")
    raise AssertionError(f"no {name} in {data!r}")


def segs(data: bytes, name: str) -> list[list[str]]:
    return [s.split("|") for s in data.decode("utf-8", "replace").split("\r") if s.startswith(name)]


def rows(db) -> list:
    with db.connect() as conn:
        return conn.execute(select(messages).order_by(messages.c.id)).all()


def items(db) -> list:
    with db.connect() as conn:
        return conn.execute(select(work_items).order_by(work_items.c.id)).all()


def patient(db, mrn: str):
    with db.connect() as conn:
        return chart_read.get_chart(conn, mrn)


def with_msh(raw: bytes, field: int, value: str) -> bytes:
    """``raw`` with MSH-``field`` replaced (MSH-1 is the separator: list index field - 1)."""
    lines = raw.split(b"\r")
    f = lines[0].split(b"|")
    while len(f) <= field - 1:
        f.append(b"")
    f[field - 1] = value.encode("utf-8")
    lines[0] = b"|".join(f)
    return b"\r".join(lines)


# -- one frame, one message -----------------------------------------------------------------


def test_two_messages_in_one_frame_are_split_journalled_applied_and_acked_each(engine):
    """Two MSH without FHS/BHS: two rows with their own bytes and header, both applied to their
    own patient, and two ACK frames in order, each echoing its own MSH-10."""
    rig = Rig(engine, channel())
    m1, m2 = adt("S1", "M1", "A01"), adt("S2", "M2", "A01", dob="19700202")
    out = rig.send(m1 + m2)
    assert out.split and [p.control_id for p in out.parts] == ["S1", "S2"]
    assert [msh_of(a)[1:3] for a in out.frames] == [["AA", "S1"], ["AA", "S2"]]
    r = rows(engine)
    assert [(x.control_id, x.raw, x.batch_index) for x in r] == [("S1", m1, 0), ("S2", m2, 1)]
    rig.drain()
    assert rig.status("store") == {"S1": "done", "S2": "done"}
    assert patient(engine, "M1")["birth_date"] == "1980-01-01"
    assert patient(engine, "M2")["birth_date"] == "1970-02-02"  # not under the first header


def test_split_frame_resent_gets_the_same_ack_frames_and_changes_nothing(engine):
    """Dedup is per message: the frame resent is two duplicates answered byte for byte, and one
    of its messages resent alone gets that message's stored ACK."""
    rig = Rig(engine, channel())
    frame = adt("D1", "M1", "A01") + adt("D2", "M2", "A01")
    first = rig.send(frame)
    again = rig.send(frame)
    assert [p.status for p in again.parts] == ["duplicate", "duplicate"]
    assert again.frames == first.frames
    alone = rig.send(adt("D2", "M2", "A01"))
    assert alone.status == "duplicate" and alone.ack == first.frames[1]
    assert len(rows(engine)) == 2


def test_split_frame_keeps_order_for_one_patient(engine):
    """Two messages for one patient in one frame are applied in frame order."""
    rig = Rig(engine, channel(apply="queued"))
    rig.send(adt("O1", "M1", "A01", dob="19800101") + adt("O2", "M1", "A08", dob="19900909"))
    rig.drain()
    assert patient(engine, "M1")["birth_date"] == "1990-09-09"


def test_split_frame_one_bad_message_is_answered_alone(engine):
    """In a split frame, a message of a type the channel refuses is AR with its own ACK; the
    others are accepted."""
    rig = Rig(engine, channel(accept=["ADT^A01"]))
    out = rig.send(adt("B1", "M1", "A01") + adt("B2", "M2", "A08") + adt("B3", "M3", "A01"))
    assert [msh_of(a)[1:3] for a in out.frames] == [["AA", "B1"], ["AR", "B2"], ["AA", "B3"]]
    assert [x.status for x in rows(engine)] == ["processed", "rejected", "processed"]  # inline


def test_channel_can_refuse_a_multi_message_frame_whole(engine):
    """multi_message: reject — one AR, ERR-3 100 at the second MSH, the frame kept whole in the
    error queue, nothing applied."""
    rig = Rig(engine, channel(multi_message="reject"))
    frame = adt("R1", "M1", "A01") + adt("R2", "M2", "A01")
    out = rig.send(frame)
    assert not out.split and len(out.frames) == 1
    assert msh_of(out.ack)[1:3] == ["AR", "R1"]
    err = msh_of(out.ack, "ERR")
    assert err[2] == "MSH^2" and err[3].startswith("100^")
    [row] = rows(engine)
    assert row.raw == frame and row.status == "rejected"
    [item] = items(engine)
    assert (item.destination, item.status, item.reason) == ("rejected", "error", "unparseable")
    assert "2 messages" in item.last_error
    assert patient(engine, "M1") is None and patient(engine, "M2") is None


# -- MSH-11 processing id, MSH-12 version ---------------------------------------------------------


@pytest.mark.parametrize("pid,what", [("T", "training"), ("D", "debugging"), ("X", "X")])
def test_test_messages_are_ar_202_stored_and_never_applied(engine, pid, what):
    """MSH-11 not in the channel's processing_ids (default P): AR, ERR-3 202 at MSH-11, raw kept,
    an error-queue item, no chart."""
    rig = Rig(engine, channel())
    raw = with_msh(adt("T1", "M1", "A01"), 11, pid)
    out = rig.send(raw)
    assert (out.status, out.ack_code) == ("rejected", "AR")
    err = msh_of(out.ack, "ERR")
    assert err[2] == "MSH^1^11^^1" and err[3].startswith("202^") and err[4] == "E"
    assert what in out.text
    [row] = rows(engine)
    assert row.raw == raw and row.status == "rejected" and row.error_code == "202"
    [item] = items(engine)
    assert (item.destination, item.status, item.reason) == ("rejected", "error", "unsupported_processing_id")
    rig.drain()
    assert patient(engine, "M1") is None


def test_processing_id_compares_its_first_component_and_follows_the_channel(engine):
    """``P^T`` (production, mode T) is production; a channel that lists T takes training messages."""
    assert Rig(engine, channel()).send(with_msh(adt("P1", "M1", "A01"), 11, "P^T")).ack_code == "AA"
    assert (
        Rig(engine, channel(processing_ids=["P", "T"]))
        .send(with_msh(adt("P2", "M2", "A01"), 11, "T"))
        .ack_code
        == "AA"
    )
    out = Rig(engine, channel()).send(with_msh(adt("P3", "M3", "A01"), 11, ""))
    assert out.ack_code == "AR" and msh_of(out.ack, "ERR")[3].startswith("101^")


@pytest.mark.parametrize("version", ["2.9", "3.0", "2.5.1.9", "25", "2.5\u00b2", "2.\u0665"])
def test_unsupported_version_is_ar_203(engine, version):
    """MSH-12 outside table 0104 2.1-2.8.2 (and non-ASCII digits such as 2.5², which once made
    the ACK builder raise): AR, ERR-3 203 at MSH-12, MSA-2 echoing the control id, stored."""
    rig = Rig(engine, channel())
    raw = with_msh(adt("V1", "M1", "A01"), 12, version)
    out = rig.send(raw)
    assert (out.status, out.ack_code) == ("rejected", "AR")
    assert msh_of(out.ack)[1:3] == ["AR", "V1"]
    assert msh_of(out.ack, "ERR")[3].startswith("203^")
    assert rows(engine)[0].raw == raw
    assert items(engine)[0].reason == "unsupported_version"


@pytest.mark.parametrize("version", ["2.1", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7.1", "2.8.2"])
def test_supported_versions_are_accepted(engine, version):
    rig = Rig(engine, channel())
    assert rig.send(with_msh(adt("V2", "M1", "A01"), 12, version)).ack_code == "AA"


def test_channel_versions_narrow_what_is_accepted(engine):
    """``versions: [2.5.*]``: 2.5.1 accepted, 2.4 refused with 203."""
    rig = Rig(engine, channel(versions=["2.5", "2.5.*"]))
    assert rig.send(with_msh(adt("W1", "M1", "A01"), 12, "2.5.1")).ack_code == "AA"
    out = rig.send(with_msh(adt("W2", "M1", "A01"), 12, "2.4"))
    assert out.ack_code == "AR" and "MSH^1^12^203&" in out.ack.decode()  # v2.4: ERR-1


# -- every rejection in the error queue, fixable -------------------------------------------------


def test_missing_msh10_reaches_the_error_queue_with_its_location(engine):
    rig = Rig(engine, channel())
    out = rig.send(adt("", "M1", "A01"))
    assert out.ack_code == "AR"
    [item] = items(engine)
    assert (item.destination, item.status, item.reason, item.error_location) == (
        "rejected",
        "error",
        "missing_field",
        "MSH-10",
    )
    assert "MSH-10" in item.last_error


def test_rejected_inside_a_batch_reaches_the_error_queue(engine):
    rig = Rig(engine, channel(accept=["ADT^A01"], apply="queued"))
    rig.send(b"BHS|^~\\&|REG\r" + adt("K1", "M1", "A01") + adt("K2", "M2", "A08") + b"BTS|2\r")
    r = rows(engine)
    assert [(x.control_id, x.status) for x in r] == [("K1", "accepted"), ("K2", "rejected")]
    errs = [i for i in items(engine) if i.status == "error"]
    assert [(i.message_id, i.destination, i.reason) for i in errs] == [
        (r[1].id, "rejected", "unsupported_event")
    ]


def test_resubmitting_a_rejected_message_goes_through_the_engine_again(engine):
    """A test message fixed to production: the copy is decided like a received one (accepted,
    one store item, applied by the worker), linked to the original, which is kept, resubmitted."""
    rig = Rig(engine, channel())
    raw = with_msh(adt("F1", "M1", "A01"), 11, "T")
    orig = rig.send(raw)
    [item] = items(engine)
    with engine.begin() as conn, pytest.raises(errorqueue.ActionError, match="refused again.*processing id"):
        errorqueue.resubmit_item(conn, item.id, raw, user="clerk", now=rig.clock(), channels=[rig.ch])
    with engine.begin() as conn, pytest.raises(errorqueue.ActionError, match="channel configuration"):
        errorqueue.resubmit_item(conn, item.id, raw, user="clerk", now=rig.clock())
    with engine.begin() as conn, pytest.raises(errorqueue.ActionError, match="cannot be retried"):
        errorqueue.retry_item(conn, item.id, user="clerk", now=rig.clock())
    fixed = with_msh(raw, 11, "P")
    with engine.begin() as conn:
        new_id = errorqueue.resubmit_item(
            conn, item.id, fixed, user="clerk", now=rig.clock(), channels=[rig.ch]
        )
    r = {x.id: x for x in rows(engine)}
    assert r[orig.message_id].status == "resubmitted" and r[orig.message_id].raw == raw
    assert (
        r[new_id].parent_id == orig.message_id and r[new_id].status == "accepted" and r[new_id].raw == fixed
    )
    rig.drain()
    by_id = {i.id: i for i in items(engine)}
    assert by_id[item.id].status == "done"
    assert [i.status for i in items(engine) if i.message_id == new_id] == ["done"]
    assert patient(engine, "M1") is not None
    assert rig.send(fixed).status == "duplicate"  # the sender's own fixed resend changes nothing


def test_rejected_item_is_listed_and_resubmitted_through_the_api(engine, monkeypatch):
    """/api/errors shows the rejected message's item; /resubmit with a fixed copy stores and
    queues it through the engine (the channels of the app)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from argon2 import PasswordHasher

    from interface.desk import users
    from interface.web.app import create_app

    from .test_web_api import PASSWORD

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    rig = Rig(engine, channel())
    raw = with_msh(adt("A1", "M1", "A01"), 11, "T")
    rig.send(raw)
    with engine.begin() as conn:
        users.add_user(conn, "clerk1", "clerk", PASSWORD, now=rig.clock())
        token = users.new_token(conn, "clerk1", now=rig.clock())
    hdr = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(engine, channels=[rig.ch], clock=rig.clock)) as client:
        listed = client.get("/api/errors", headers=hdr).json()["items"]
        assert [(i["destination"], i["reason"], i["control_id"]) for i in listed] == [
            ("rejected", "unsupported_processing_id", "A1")
        ]
        item_id = listed[0]["id"]
        r = client.post(
            f"/api/errors/{item_id}/resubmit", headers=hdr, json={"raw": raw.decode().replace("\r", "\n")}
        )
        assert r.status_code == 409 and "processing id" in r.json()["detail"]  # refused again, unchanged
        fixed = with_msh(raw, 11, "P").decode().replace("\r", "\n")
        r = client.post(f"/api/errors/{item_id}/resubmit", headers=hdr, json={"raw": fixed})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "done"
        assert client.get("/api/errors", headers=hdr).json()["items"] == []
    new = next(x for x in rows(engine) if x.id == r.json()["message_id"])
    assert new.status == "accepted" and new.control_id == "A1"


# -- batches -----------------------------------------------------------------------------------


def test_batch_count_that_disagrees_warns_in_the_ack_and_flags_the_batch(engine):
    """BTS-1 says 3, two messages came: both accepted and stored on their own; the batch answer
    carries an ERR (W, at BTS-1) and the frame itself waits in the error queue (batch_count)."""
    rig = Rig(engine, channel(apply="queued"))
    frame = b"BHS|^~\\&|REG|HOSP|||||||B-77\r" + adt("N1", "M1", "A01") + adt("N2", "M2", "A01") + b"BTS|3\r"
    out = rig.send(frame)
    assert out.ack.startswith(b"BHS|") and [p.control_id for p in out.parts] == ["N1", "N2"]
    [err] = segs(out.ack, "ERR")
    assert err[2] == "BTS^1^1" and err[3].startswith("100^") and err[4] == "W"
    assert "says '3'" in err[7] and "2 messages" in err[7]
    bts = segs(out.ack, "BTS")[0]
    assert bts[1] == "2" and "batch count mismatch" in bts[2]
    assert [msh_of(a)[1] for a in segs_acks(out.ack)] == ["AA", "AA"]
    r = rows(engine)
    assert [(x.control_id, x.status, x.message_type) for x in r] == [
        ("N1", "accepted", "ADT^A01"),
        ("N2", "accepted", "ADT^A01"),
        ("B-77", "error", "batch"),
    ]
    assert r[2].raw == frame
    [flag] = [i for i in items(engine) if i.destination == "batch"]
    assert (flag.status, flag.reason, flag.error_location) == ("error", "batch_count", "BTS-1")
    rig.drain()
    assert patient(engine, "M1") and patient(engine, "M2")


def segs_acks(batch: bytes) -> list[bytes]:
    parts = batch.split(b"MSH|")[1:]
    return [b"MSH|" + p for p in parts]


def test_fts_count_is_the_number_of_batches(engine):
    """FTS-1 counts batches (2.10.3): right with one batch, flagged at FTS-1 when wrong."""
    rig = Rig(engine, channel())
    good = b"FHS|^~\\&\rBHS|^~\\&\r" + adt("G1", "M1", "A01") + b"BTS|1\rFTS|1\r"
    assert b"ERR" not in rig.send(good).ack
    bad = b"FHS|^~\\&\rBHS|^~\\&\r" + adt("G2", "M2", "A01") + b"BTS|1\rFTS|2\r"
    out = rig.send(bad)
    [err] = segs(out.ack, "ERR")
    assert err[2] == "FTS^1^1" and err[4] == "W"
    assert [i.error_location for i in items(engine) if i.destination == "batch"] == ["FTS-1"]


def test_batch_flag_is_resubmitted_as_a_batch_and_duplicates_stay_out(engine):
    """Resubmitting the flagged batch with the missing message added: the copy is a batch again;
    the messages already stored are duplicates, the new one is accepted."""
    rig = Rig(engine, channel())
    rig.send(b"BHS|^~\\&\r" + adt("Q1", "M1", "A01") + b"BTS|2\r")
    [flag] = [i for i in items(engine) if i.destination == "batch"]
    fixed = b"BHS|^~\\&\r" + adt("Q1", "M1", "A01") + adt("Q2", "M2", "A01") + b"BTS|2\r"
    with engine.begin() as conn:
        new_id = errorqueue.resubmit_item(
            conn, flag.id, fixed, user="clerk", now=rig.clock(), channels=[rig.ch]
        )
    assert [x.control_id for x in rows(engine)].count("Q1") == 1
    assert next(x for x in rows(engine) if x.id == new_id).control_id == "Q2"


# -- a frame that breaks the reader or the ACK builder is decided on its own -------------------


def _poison(monkeypatch, eng: Engine, control_id: str) -> None:
    real = eng._prepare_one

    def prepare_one(inb, group, now, raw, text, warning):
        if f"|{control_id}|" in text.split("\r", 1)[0]:
            raise RuntimeError("a bug no one foresaw")
        return real(inb, group, now, raw, text, warning)

    monkeypatch.setattr(eng, "_prepare_one", prepare_one)


def test_an_exception_reading_one_frame_is_that_frames_ae_only(engine, monkeypatch):
    """One frame whose reading raises, among five: it is AE (ERR 207, MSA-2 its control id),
    stored raw and in the error queue; the four others are AA and applied."""
    rig = Rig(engine, channel())
    _poison(monkeypatch, rig.engine, "BAD")
    frames = [adt(f"G{i}", f"M{i}", "A01") for i in range(4)]
    frames.insert(2, adt("BAD", "M9", "A01"))
    outs = rig.engine.receive_many([Inbound(rig.ch, f) for f in frames])
    assert [(o.control_id, o.ack_code) for o in outs] == [
        ("G0", "AA"),
        ("G1", "AA"),
        ("BAD", "AE"),
        ("G2", "AA"),
        ("G3", "AA"),
    ]
    assert msh_of(outs[2].ack)[1:3] == ["AE", "BAD"] and msh_of(outs[2].ack, "ERR")[3].startswith("207^")
    bad = next(x for x in rows(engine) if x.control_id == "BAD")
    assert bad.raw == frames[2] and bad.status == "rejected"
    assert [(i.destination, i.reason) for i in items(engine) if i.message_id == bad.id] == [
        ("rejected", "processing_error")
    ]


def test_an_exception_on_one_message_of_a_split_frame_is_that_messages_ae_only(engine, monkeypatch):
    """In a frame of three messages, the one whose reading raises is AE (its own bytes kept);
    the two others are AA, each in its own ACK frame."""
    rig = Rig(engine, channel())
    _poison(monkeypatch, rig.engine, "BAD")
    out = rig.send(adt("X1", "M1", "A01") + adt("BAD", "M2", "A01") + adt("X3", "M3", "A01"))
    assert [msh_of(a)[1:3] for a in out.frames] == [["AA", "X1"], ["AE", "BAD"], ["AA", "X3"]]
    bad = next(x for x in rows(engine) if x.control_id == "BAD")
    assert bad.raw == adt("BAD", "M2", "A01") and bad.status == "rejected"


def test_an_ack_builder_failure_is_that_frames_ae_only(engine, monkeypatch):
    """build_ack raising for one message's header: that frame is answered AE from a bare
    header (its MSH-10 kept), stored and flagged; the group's other frames are AA."""
    real = acks.build_ack

    def build_ack(header, code, now, **kw):
        if header is not None and header.control_id == "BAD" and header.version:
            raise ValueError("the builder tripped")
        return real(header, code, now, **kw)

    monkeypatch.setattr(acks, "build_ack", build_ack)
    rig = Rig(engine, channel())
    outs = rig.engine.receive_many([Inbound(rig.ch, adt(c, f"M{c}", "A01")) for c in ("G1", "BAD", "G2")])
    assert [(o.control_id, o.ack_code) for o in outs] == [("G1", "AA"), ("BAD", "AE"), ("G2", "AA")]
    assert msh_of(outs[1].ack)[1:3] == ["AE", "BAD"]
    assert next(x for x in rows(engine) if x.control_id == "BAD").status == "rejected"


def test_a_bug_inside_the_transaction_costs_only_its_frame(engine, monkeypatch):
    """An exception (not a database error) while journalling: the group is committed frame by
    frame; the good frames AA, the bad one stored as a rejection (AE 207)."""
    real = journal.insert_rows

    def insert_rows(conn, rows_, now):
        if any(r.control_id == "BAD" and r.status == "accepted" for r in rows_):
            raise KeyError("a bug")
        return real(conn, rows_, now)

    monkeypatch.setattr(journal, "insert_rows", insert_rows)
    rig = Rig(engine, channel())
    outs = rig.engine.receive_many([Inbound(rig.ch, adt(c, f"M{c}", "A01")) for c in ("G1", "BAD", "G2")])
    assert [(o.control_id, o.ack_code) for o in outs] == [("G1", "AA"), ("BAD", "AE"), ("G2", "AA")]
    assert {x.control_id: x.status for x in rows(engine)} == {
        "G1": "processed",
        "G2": "processed",
        "BAD": "rejected",
    }  # (applied inline)


def test_one_poisoned_frame_among_many_through_the_writer(engine, monkeypatch):
    """Under load through the group-commit writer: 60 frames from 6 senders with one poisoned
    among them; every frame answered, 59 AA, the poisoned one AE and stored."""
    rig = Rig(engine, channel(apply="queued"))
    _poison(monkeypatch, rig.engine, "BAD")
    writer = GroupCommitWriter(rig.engine, lambda f, *a: f(*a), faults={})
    answers: dict[str, object] = {}
    failures: list = []
    done = threading.Event()
    lock = threading.Lock()
    cids = [f"L{s}-{i}" for s in range(6) for i in range(10)]
    cids[33] = "BAD"

    def got(outcome):
        with lock:
            answers[outcome.control_id] = outcome
            if len(answers) == len(cids):
                done.set()

    writer.start()
    try:
        for n, cid in enumerate(cids):
            writer.submit(Inbound(rig.ch, adt(cid, f"M{n % 6}", "A08"), f"peer{n % 6}")).addCallbacks(
                got, failures.append
            )
        assert done.wait(60), f"{len(answers)} of {len(cids)} answered"
    finally:
        writer.stop()
    assert not failures
    codes = {c: o.ack_code for c, o in answers.items()}
    assert codes.pop("BAD") == "AE" and set(codes.values()) == {"AA"} and len(codes) == 59
    assert {x.control_id: x.status for x in rows(engine)}["BAD"] == "rejected"
    assert len(rows(engine)) == 60


def test_rejected_item_through_the_cli_list_show_resubmit(engine, db_url, tmp_path, capsys):
    """``interface errors list`` shows the rejected message's item, ``show`` its raw bytes, and
    ``resubmit --file`` (with the channels directory) takes the fixed copy through the engine."""
    import json

    from interface.config.channels import load_channels
    from interface.ops import cli

    from .test_web_api import ROOT

    ch = next(c for c in load_channels(ROOT / "channels") if c.name == "adt")
    raw = with_msh(adt("CL1", "M1", "A01"), 11, "D")
    out = Engine(engine).receive(ch, raw)
    assert out.ack_code == "AR"
    assert cli.main(["errors", "list", "--db", db_url, "--json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert (item["destination"], item["reason"]) == ("rejected", "unsupported_processing_id")
    assert cli.main(["errors", "show", str(item["id"]), "--db", db_url]) == 0
    assert "CL1|D|2.5.1" in capsys.readouterr().out
    fixed = tmp_path / "fixed.hl7"
    fixed.write_bytes(with_msh(raw, 11, "P").replace(b"\r", b"\n"))
    argv = [
        "errors",
        "resubmit",
        str(item["id"]),
        "--file",
        str(fixed),
        "--db",
        db_url,
        "--user",
        "clerk1",
        "--channels",
        str(ROOT / "channels"),
    ]
    assert cli.main(argv) == 0
    r = rows(engine)
    assert [(x.control_id, x.status, x.parent_id) for x in r] == [
        ("CL1", "resubmitted", None),
        ("CL1", "accepted", r[0].id),
    ]
    assert cli.main(argv) == 1  # the item is done now
    assert "done" in capsys.readouterr().err


def test_quarantined_duplicate_is_resubmitted_through_the_engine(engine):
    """A reused control id with a different body (205) is fixed by giving the copy its own id:
    accepted and applied; resubmitted unchanged it would conflict again and nothing changes."""
    rig = Rig(engine, channel(apply="queued"))
    rig.send(adt("QD1", "M1", "A01"))
    other = adt("QD1", "M2", "A01")
    assert rig.send(other).status == "quarantined"
    [item] = [i for i in items(engine) if i.destination == "quarantine"]
    with engine.begin() as conn, pytest.raises(errorqueue.ActionError, match="already used"):
        errorqueue.resubmit_item(conn, item.id, other, user="clerk", now=rig.clock(), channels=[rig.ch])
    with engine.begin() as conn:
        new_id = errorqueue.resubmit_item(
            conn, item.id, adt("QD2", "M2", "A01"), user="clerk", now=rig.clock(), channels=[rig.ch]
        )
    rig.drain()
    assert [i.status for i in items(engine) if i.message_id == new_id] == ["done"]
    assert patient(engine, "M2") is not None


def test_each_message_of_a_batch_is_counted_on_its_own(engine):
    """The channel counters (dashboard, /api/channels, /metrics) count a batch's and a split
    frame's messages one by one, with each message's own outcome."""
    from interface.ops.runtime import Runtime

    rig = Rig(engine, channel(accept=["ADT^A01"], apply="queued"))
    rt = Runtime()
    for raw in (
        b"BHS|^~\\&\r" + adt("E1", "M1", "A01") + adt("E2", "M2", "A08") + b"BTS|2\r",
        adt("E3", "M3", "A01") + adt("E4", "M4", "A01"),
    ):
        rt.count(Inbound(rig.ch, raw), rig.send(raw))
    assert rt.counters["adt"] == {"received": 4, "accepted": 3, "rejected": 1}


def test_a_failure_the_engine_does_not_catch_costs_the_writer_only_that_frame(engine, monkeypatch):
    """Whatever still escapes the engine for a group (here: commit_group raising whenever BAD is
    in it) makes the writer answer frame by frame: the good frames AA, only BAD's sender gets
    no answer (its connection closed, nothing committed for it)."""
    rig = Rig(engine, channel())
    real = rig.engine.commit_group

    def commit_group(group, conn=None):
        if any(b"|BAD|" in inb.raw for inb in group.inbound):
            raise RuntimeError("a bug outside the engine's guards")
        return real(group, conn)

    monkeypatch.setattr(rig.engine, "commit_group", commit_group)
    writer = GroupCommitWriter(rig.engine, lambda f, *a: f(*a), faults={})
    answers, failures = {}, []
    # submitted before the writer starts: the three are taken as one group
    for cid in ("W1", "BAD", "W2"):
        writer.submit(Inbound(rig.ch, adt(cid, f"M{cid}", "A01"))).addCallbacks(
            lambda o: answers.__setitem__(o.control_id, o.ack_code), failures.append
        )
    writer.start()
    writer.stop()
    assert answers == {"W1": "AA", "W2": "AA"} and len(failures) == 1
    assert sorted(x.control_id for x in rows(engine)) == ["W1", "W2"]


def test_batch_flag_resubmitted_from_a_file_through_the_cli(engine, db_url, tmp_path):
    """``interface errors resubmit`` of a batch item sends the whole file as one frame (LF
    lines), so every message of the completed batch is decided."""
    from interface.config.channels import load_channels
    from interface.ops import cli

    from .test_web_api import ROOT

    ch = next(c for c in load_channels(ROOT / "channels") if c.name == "adt")
    Engine(engine).receive(ch, b"BHS|^~\\&\r" + adt("CB1", "M1", "A01") + b"BTS|2\r")
    [flag] = [i for i in items(engine) if i.destination == "batch"]
    path = tmp_path / "batch.hl7"
    path.write_bytes(
        (b"BHS|^~\\&\r" + adt("CB1", "M1", "A01") + adt("CB2", "M2", "A01") + b"BTS|2\r").replace(
            b"\r", b"\n"
        )
    )
    assert (
        cli.main(
            [
                "errors",
                "resubmit",
                str(flag.id),
                "--file",
                str(path),
                "--db",
                db_url,
                "--user",
                "clerk1",
                "--channels",
                str(ROOT / "channels"),
            ]
        )
        == 0
    )
    assert sorted(x.control_id for x in rows(engine) if x.message_type != "batch") == ["CB1", "CB2"]
