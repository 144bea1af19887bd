"""The identity check in the worker: a document naming another person than its chart is not
filed (an ``identity_mismatch`` item, differences kept for the clerk); a corrected spelling is
filed; an ADT update rewriting a birth date is held unless the channel's sender is authoritative.
Through the real channels, mappings and queue (tests.test_adt_events.Harness)."""

from __future__ import annotations

from sqlalchemy import select

from interface.config.channels import Identity, load_channels
from interface.rules import identity
from interface.store import document_read, identity_check
from interface.store.identity_schema import identity_reviews
from tests import test_unknown_patient as unknown_patient
from tests.test_adt_events import ROOT, Harness, adt, run

RULES = identity.load_rules(ROOT / "rules" / "identity.yaml")


def harness(engine, *, authoritative: bool = False) -> Harness:
    channels = load_channels(ROOT / "channels")
    if authoritative:
        channels = [
            c.model_copy(update={"identity": Identity(authoritative=True)}) if c.name == "adt" else c
            for c in channels
        ]
    h = Harness(engine, channels=channels)
    h.pipeline.identity_rules = RULES
    return h


def mdm(number: str, mrn: str = "M100", name: str = "DOE^JANE", dob: str = "19800101", sex: str = "F") -> str:
    """An MDM T02 (tests.test_unknown_patient.mdm) whose PID names this person."""
    text = unknown_patient.mdm("T02", number, mrn)
    return text.replace(f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE", f"PID|1||{mrn}^^^HOSP^MR||{name}||{dob}|{sex}")


def doc(h: Harness, number: str):
    with h.db.connect() as conn:
        return document_read.get_document(conn, number)


def test_a_document_naming_another_person_is_not_filed(engine):
    h = harness(engine)
    run(h, adt("A04", name="RIVERA^ANA^MARIA", dob="19840312", sex="F"))
    assert h.send(mdm("D1"), "mdm").status == "accepted"
    h.drain()
    (item,) = h.items("error")
    assert item.reason == "identity_mismatch" and item.error_location == "PID-3"
    assert "family name" in item.last_error and "birth date" in item.last_error
    assert "RIVERA" not in item.last_error and "DOE" not in item.last_error  # fields, not values
    assert doc(h, "D1") is None  # nothing filed
    with h.db.connect() as conn:
        rev = identity_check.review(conn, item.id)
    assert rev["status"] == "mismatch" and rev["mrn"] == "M100"
    assert rev["detail"]["message"]["family"] == "DOE" and rev["detail"]["chart"]["family"] == "RIVERA"
    fields = {d["field"]: d["verdict"] for d in rev["detail"]["differences"]}
    assert fields == {"family": "mismatch", "given": "mismatch", "birth_date": "mismatch"}


def test_a_corrected_spelling_is_filed(engine):
    h = harness(engine)
    run(h, adt("A04", name="RIVERA^ANA^MARIA", dob="19840312", sex="F"))
    h.send(mdm("D2", name="RIVIERA^ANNA", dob="19840312"), "mdm")
    h.drain()
    assert h.items("error") == []
    assert doc(h, "D2")["mrn"] == "M100"


def test_without_identity_rules_nothing_is_checked(engine):
    h = harness(engine)
    h.pipeline.identity_rules = None
    run(h, adt("A04", name="RIVERA^ANA", dob="19840312"))
    h.send(mdm("D3"), "mdm")
    h.drain()
    assert doc(h, "D3") is not None


def test_an_update_rewriting_the_birth_date_is_held(engine):
    h = harness(engine)
    run(h, adt("A04", name="RIVERA^ANA", dob="19840312", sex="F"))
    h.send(adt("A08", time="20260302100000", name="RIVERA^ANA", dob="19840313", sex="F"))
    h.drain()
    (item,) = h.items("error")
    assert item.reason == "identity_mismatch"
    assert h.chart("M100")["birth_date"] == "1984-03-12"  # unchanged


def test_an_update_changing_sex_is_held_and_a_name_change_is_not(engine):
    h = harness(engine)
    run(h, adt("A04", name="RIVERA^ANA", dob="19840312", sex="F"))
    run(h, adt("A08", time="20260302100000", name="SMITH^ANA", dob="19840312", sex="F"))
    assert h.chart("M100")["name"]["family"] == "SMITH"  # the adt rule: a new family name is shown only
    h.send(adt("A08", time="20260303100000", name="SMITH^ANA", dob="19840312", sex="M"))
    h.drain()
    (item,) = h.items("error")
    assert item.reason == "identity_mismatch"


def test_an_authoritative_sender_rewrites_the_birth_date(engine):
    h = harness(engine, authoritative=True)
    run(h, adt("A04", name="RIVERA^ANA", dob="19840312", sex="F"))
    run(h, adt("A08", time="20260302100000", name="RIVERA^ANA", dob="19840313", sex="F"))
    assert h.items("error") == []
    assert h.chart("M100")["birth_date"] == "1984-03-13"


def test_a_merge_is_checked_against_the_survivor(engine):
    h = harness(engine)
    run(h, adt("A04", "M1", name="CHEN^WEI", dob="19571102", sex="M"))
    run(h, adt("A04", "M2", name="CHEN^WAY", dob="19571102", sex="M"))
    h.send(adt("A40", "M1", time="20260302100000", name="DOE^JOHN", dob="19900101", sex="M", mrg="M2"))
    h.drain()
    (item,) = h.items("error")
    assert item.reason == "identity_mismatch"
    run(h, adt("A40", "M1", time="20260302110000", name="CHEN^WEI", dob="19571102", sex="M", mrg="M2"))
    with h.db.connect() as conn:
        assert conn.execute(select(identity_reviews.c.mrn)).scalars().all() == ["M1"]


def test_the_sample_feeds_file_as_the_walkthrough_says(engine):
    """The README's walkthrough with the shipped rules (rules/identity.yaml, as ``interface run``
    has them): every ADT sample applies, merges and the A47 MRN change included (the identity
    check's patient rows are not reused across a rename's writes), then every MDM sample files
    except the T11 cancel naming another person, held as an identity mismatch."""
    h = harness(engine)
    for f in sorted((ROOT / "sample_messages" / "adt").glob("*.hl7")):
        assert h.send(f.read_bytes()).status == "accepted", f.name
        h.drain()
        assert [i.status for i in h.items()] == ["done"] * len(h.items()), f.name
    for f in sorted((ROOT / "sample_messages" / "mdm").glob("*.hl7")):
        assert h.send(f.read_bytes(), "mdm").status == "accepted", f.name
    h.drain()
    waiting = [(i.destination, i.status, i.reason) for i in h.items() if i.status != "done"]
    assert waiting == [("store", "error", "identity_mismatch")]
