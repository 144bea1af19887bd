"""A document for a patient the chart does not know: held (blocking nobody), applied when the
patient arrives, an "unknown patient" error item after the channel's delay — never lost, never
filed under the wrong patient. Through the real queue with an injected clock."""

from __future__ import annotations

from sqlalchemy import select

from interface.config.channels import load_channels
from interface.desk import errorqueue
from interface.store import document_read, workqueue
from interface.store import documents as D
from interface.store.schema import messages
from tests.test_adt_events import ROOT, Harness, adt, pv1

HOLD = 3600.0


def mdm(event: str, number: str, mrn: str, *, status: str = "DI", time: str = "20261120100000") -> str:
    txa = [
        "TXA",
        "1",
        "HP",
        "TX",
        "20261120090000",
        "",
        "20261120091500",
        "",
        "",
        "1234^SMITH^JOHN",
        "",
        "",
        number,
        "",
        "",
        "",
        "",
        status,
        "U",
        "AV",
        "AC",
    ]
    return (
        "\r".join(
            [
                f"MSH|^~\\&|DOCS|HOSP|IF|HOSP|{time}||MDM^{event}|{number}{event}{mrn}|P|2.5.1",
                f"EVN|{event}|{time}",
                f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE",
                "PV1|1|I|4W||||||||||||||||V1^^^HOSP^VN",
                "|".join(txa),
                "OBX|1|TX|HP||Report text||||||F",
            ]
        )
        + "\r"
    )


def harness(engine) -> Harness:
    channels = [
        c.model_copy(update={"hold_unknown_patient_seconds": HOLD}) if c.name == "mdm" else c
        for c in load_channels(ROOT / "channels")
    ]
    return Harness(engine, channels=channels)


def doc(h: Harness, number: str) -> dict | None:
    with h.db.connect() as conn:
        return document_read.get_document(conn, number)


def test_held_then_applied_when_the_patient_arrives(engine):
    """T02 for an unknown MRN: ACKed and held (not in the index); the A04 that creates the
    patient releases it at once (no wait for the recheck) and it is filed under that patient."""
    h = harness(engine)
    out = h.send(mdm("T02", "D1", "N1"), "mdm")
    assert out.status == "accepted" and out.ack_code in ("AA", "CA")
    h.drain()
    (held,) = h.items("held")
    assert (held.reason, held.last_error) == ("unknown_patient", "unknown patient")
    assert doc(h, "D1") is None
    h.send(adt("A04", "N1", pv1_=pv1("O")))
    h.drain()
    assert h.items("held") == [] and h.items("error") == []
    assert doc(h, "D1")["mrn"] == "N1"
    assert [d["document_number"] for d in h.chart("N1")["documents"]] == ["D1"]


def test_a28_releases_and_held_documents_apply_in_their_order(engine):
    """Two messages for the same unknown patient (T02 then T03) are both held, then applied in
    arrival order once an A28 adds the person: the T03's status wins."""
    h = harness(engine)
    h.send(mdm("T02", "D1", "N1", status="DI"), "mdm")
    h.send(mdm("T03", "D1", "N1", status="AU", time="20261120110000"), "mdm")
    h.drain()
    assert len(h.items("held")) == 2
    h.send(adt("A28", "N1"))
    h.drain()
    assert h.items("held") == [] and h.items("error") == []
    d = doc(h, "D1")
    assert d["status"] == "AU"
    assert [v["event"] for v in d["versions"]] == ["T02", "T03"]


def test_never_filed_under_another_patient(engine):
    """Another patient arriving does not release the document; it waits for its own MRN."""
    h = harness(engine)
    h.send(mdm("T02", "D1", "N1"), "mdm")
    h.drain()
    h.send(adt("A04", "N2", pv1_=pv1("O")))
    h.drain()
    assert len(h.items("held")) == 1
    assert doc(h, "D1") is None
    assert h.chart("N2")["documents"] == []


def test_held_document_blocks_nobody(engine):
    """While one document is held, other patients' documents (and the same channel) flow."""
    h = harness(engine)
    h.send(adt("A28", "K1"))
    h.send(mdm("T02", "D1", "N1"), "mdm")
    h.send(mdm("T02", "D2", "K1"), "mdm")
    h.drain()
    assert doc(h, "D2")["mrn"] == "K1"
    assert len(h.items("held")) == 1


def test_error_item_after_the_channel_delay_then_clerk_retry(engine):
    """Past hold_unknown_patient_seconds the held item becomes an error item "unknown patient";
    when the patient finally exists, a clerk's retry files it."""
    h = harness(engine)
    h.send(mdm("T02", "D1", "N1"), "mdm")
    h.drain()
    h.advance(HOLD / 2)
    h.drain()
    assert len(h.items("held")) == 1 and h.items("error") == []
    h.advance(HOLD / 2 + 60)
    h.drain()
    (err,) = h.items("error")
    assert (err.reason, err.last_error) == ("unknown_patient", "unknown patient")
    with engine.connect() as conn:
        assert conn.execute(select(messages.c.status)).scalar_one() == "error"
    h.send(adt("A04", "N1", pv1_=pv1("O")))
    h.drain()
    assert doc(h, "D1") is None  # an error item waits for the clerk
    with engine.begin() as conn:
        errorqueue.retry_item(conn, err.id, user="clerk", now=h.now)
    h.drain()
    assert doc(h, "D1")["mrn"] == "N1"
    assert h.items("error") == [] and h.items("held") == []


def test_patient_arriving_as_the_prior_of_a_merge(engine):
    """A document held for an MRN that then appears as the prior MRN of an A40 (merged into a
    known patient) is filed under the survivor."""
    h = harness(engine)
    h.send(adt("A28", "S1"))
    h.send(mdm("T02", "D1", "OLD1"), "mdm")
    h.drain()
    assert len(h.items("held")) == 1
    h.send(adt("A40", "S1", time="20260302100000", mrg="OLD1"))
    h.drain()
    assert h.items("held") == [] and h.items("error") == []
    assert doc(h, "D1")["mrn"] == "S1"
