"""The clerk's identity actions through the real queue: file anyway (reason required, audited),
refile / file to another chart (a linked copy with PID-3 written by the engine, checked again),
send back, and the unknown-patient desk's candidate list."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from interface.desk import candidates as cand
from interface.desk import identity_desk as desk
from interface.desk.errorqueue import ActionError
from interface.hl7.identity import MrnRule
from interface.hl7.message import decode, parse
from interface.hl7.pid3 import with_mrn
from interface.store import identity_check
from interface.store.schema import audit, messages
from tests.test_adt_events import run
from tests.test_identity_engine import adt, doc, harness, mdm

RIVERA = dict(name="RIVERA^ANA^MARIA", dob="19840312", sex="F")
CHEN = dict(name="CHEN^WEI", dob="19571102", sex="M")


def mismatch(engine):
    """M100 is Rivera, M200 is Chen; a document for M100 naming Chen waits as a mismatch."""
    h = harness(engine)
    run(h, adt("A04", "M100", **RIVERA), adt("A04", "M200", **CHEN))
    h.send(mdm("D1", "M100", name="CHEN^WEI", dob="19571102", sex="M"), "mdm")
    h.drain()
    (item,) = h.items("error")
    assert item.reason == "identity_mismatch"
    return h, item


def actions(h, item_id) -> list[str]:
    with h.db.connect() as conn:
        return [
            r.action
            for r in conn.execute(select(audit).where(audit.c.target_id == str(item_id)).order_by(audit.c.id))
        ]


def test_file_anyway_needs_a_reason_and_files_to_the_chart_named(engine):
    h, item = mismatch(engine)
    with pytest.raises(ActionError, match="reason"), h.db.begin() as conn:
        desk.file_anyway(conn, item.id, user="clerk1", reason=" ", now=h.now)
    with h.db.begin() as conn:
        desk.file_anyway(conn, item.id, user="clerk1", reason="checked with the ward", now=h.now)
    h.drain()
    assert h.items("error") == [] and doc(h, "D1")["mrn"] == "M100"
    assert actions(h, item.id) == ["file_anyway", "retry"]
    with h.db.connect() as conn:
        rev = identity_check.review(conn, item.id)
    assert (rev["status"], rev["decided_by"], rev["reason"]) == (
        "filed_anyway",
        "clerk1",
        "checked with the ward",
    )


def test_file_anyway_is_only_for_a_mismatch(engine):
    h, item = mismatch(engine)
    with h.db.begin() as conn:
        desk.file_anyway(conn, item.id, user="c", reason="ok", now=h.now)
    with pytest.raises(ActionError, match="identity mismatch"), h.db.begin() as conn:
        desk.file_anyway(conn, item.id, user="c", reason="again", now=h.now)


def test_refile_to_the_right_chart_is_a_linked_copy(engine):
    h, item = mismatch(engine)
    with h.db.begin() as conn:
        new_id = desk.refile(
            conn, item.id, "M200", user="clerk1", now=h.now, channels=h.channels, reason="Chen's"
        )
    h.drain()
    assert h.items("error") == [] and doc(h, "D1")["mrn"] == "M200"
    with h.db.connect() as conn:
        orig = conn.execute(select(messages).where(messages.c.id == item.message_id)).one()
        copy = conn.execute(select(messages).where(messages.c.id == new_id)).one()
    assert orig.status == "resubmitted" and b"M100^^^HOSP^MR" in orig.raw  # the original kept
    assert copy.parent_id == orig.id and copy.patient_id == "M200"
    assert parse(decode(copy.raw).text).value("PID", 3) == "M200"
    assert actions(h, item.id) == ["resubmit", "file_to"]


def test_a_refiled_copy_is_checked_again(engine):
    h, item = mismatch(engine)
    run(h, adt("A04", "M300", name="DOE^JOHN", dob="19900101", sex="M"))
    with h.db.begin() as conn:
        desk.refile(conn, item.id, "M300", user="c", now=h.now, channels=h.channels)
    h.drain()
    (again,) = h.items("error")
    assert again.id == item.id and again.reason == "identity_mismatch" and doc(h, "D1") is None


def test_file_to_an_unknown_chart_is_refused(engine):
    h, item = mismatch(engine)
    with pytest.raises(ActionError, match="no chart"), h.db.begin() as conn:
        desk.file_to(conn, item.id, "NOPE", user="c", now=h.now, channels=h.channels)


def test_send_back_discards_with_the_reason(engine):
    h, item = mismatch(engine)
    with h.db.begin() as conn:
        desk.send_back(conn, item.id, user="c", reason="wrong patient dictated", now=h.now)
    (gone,) = h.items("discarded")
    assert gone.id == item.id and doc(h, "D1") is None
    assert actions(h, item.id) == ["discard", "send_back"]
    with h.db.connect() as conn:
        assert identity_check.review(conn, item.id)["status"] == "sent_back"


def test_unknown_patient_candidates_and_file_to(engine):
    h = harness(engine)
    run(h, adt("A04", "M100", **RIVERA), adt("A04", "M200", **CHEN))
    run(h, adt("A04", "M300", name="RIVERS^ANDREW", dob="19840312", sex="M"))
    h.send(mdm("D9", "N1", name="RIVERA^ANNA", dob="19840312", sex="F"), "mdm")
    h.drain()
    (held,) = h.items("held")
    with h.db.connect() as conn:
        found = cand.candidates(conn, held.id, channels=list(h.channels.values()))
    assert [c["mrn"] for c in found] == ["M100", "M300"]  # Chen shares nothing
    assert found[0]["score"] > found[1]["score"] >= 0
    assert "birth date: same" in found[0]["reasons"] and "sex: differs" in found[1]["reasons"]
    with h.db.begin() as conn:
        desk.file_to(conn, held.id, "M100", user="c", now=h.now, channels=h.channels)
    h.drain()
    assert doc(h, "D9")["mrn"] == "M100" and h.items("held") == []


def test_pid3_is_rewritten_in_the_messages_own_delimiters():
    rule = MrnRule("HOSP", ("MR",))
    text = "MSH#*~\\&#A#B\rPID#1##OLD*A*B*HOSP*MR~999-00-1234***SSA*SS##X*Y\r"
    out = with_mrn(text, "N&1", rule)
    assert out == "MSH#*~\\&#A#B\rPID#1##N\\T\\1*A*B*HOSP*MR~999-00-1234***SSA*SS##X*Y\r"
    added = with_mrn("MSH|^~\\&|A\rPID|1||999^^^SSA^SS\r", "M1", rule)
    assert added.split("\r")[1] == "PID|1||M1^^^HOSP^MR~999^^^SSA^SS"
    with pytest.raises(Exception, match="no PID"):
        with_mrn("MSH|^~\\&|A\rEVN|A01\r", "M1", rule)


def test_a_refiled_item_joins_the_right_patients_order(engine):
    """Filed to M200, the item leaves M100's order (it held M100's next document behind it) and
    takes its original place in M200's."""
    from interface.store.schema import work_keys

    h, item = mismatch(engine)
    h.send(mdm("D2", "M100", name="RIVERA^ANA^MARIA", dob="19840312", sex="F"), "mdm")
    h.drain()
    assert doc(h, "D2") is None  # waits behind the mismatch of its patient
    with h.db.begin() as conn:
        desk.refile(conn, item.id, "M200", user="c", now=h.now, channels=h.channels)
    with h.db.connect() as conn:
        keys = [r.key for r in conn.execute(select(work_keys.c.key).where(work_keys.c.item_id == item.id))]
    (moved,) = [i for i in h.items() if i.id == item.id]
    assert keys == ["mrn:M200"] and moved.key == "mrn:M200"
    h.drain()
    assert doc(h, "D1")["mrn"] == "M200" and doc(h, "D2")["mrn"] == "M100"
