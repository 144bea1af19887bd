"""ADT event semantics end to end: HL7 text -> Engine.receive -> the queue -> Worker -> chart.

Each event of docs/adt-events.md is sent as a message through the real channel (channels/adt.yaml)
and mapping (mappings/adt.yaml), processed by a Worker with an injected clock, and checked on the
chart a user reads. ``Harness`` is shared with the MDM, order, corpus and dry-run tests.
"""

from __future__ import annotations

import functools
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from interface.config.channels import load_channels
from interface.engine.inbound import Engine
from interface.engine.outcome import Outcome
from interface.engine.processing import Pipeline, Worker
from interface.mapping.loader import load_mappings
from interface.rules.completeness import load_rules
from interface.store import chart, chart_read
from interface.store.documents import DocumentSettings
from interface.store.schema import work_items

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


@functools.lru_cache(maxsize=None)
def _config():
    """Mappings and rules, compiled once per test session (they are read-only)."""
    return load_mappings(ROOT / "mappings"), load_rules(ROOT / "rules" / "completeness.yaml")


class Harness:
    """The real channels, mappings and rules; an Engine and a Worker sharing a clock you move."""

    def __init__(self, db, *, channels=None, workers: int = 1, batch: int = 64):
        self.db = db
        self.now = NOW
        channels = channels or load_channels(ROOT / "channels")
        self.channels = {c.name: c for c in channels}
        mappings, rules = _config()
        settings = DocumentSettings(rules=rules)
        self.pipeline = Pipeline(channels, mappings, document_settings=settings)
        self.workers = [
            Worker(db, self.pipeline, clock=self.clock, rng=random.Random(i), batch=batch)
            for i in range(workers)
        ]
        self.worker = self.workers[0]
        # queued apply (the worker drains), with the refusals at receipt interface run makes
        self.engine = Engine(db, clock=self.clock, events=self.worker.unapplied_event)

    def clock(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def send(self, raw: bytes | str, channel: str = "adt") -> Outcome:
        if isinstance(raw, str):
            raw = raw.replace("\n", "\r").encode()
        return self.engine.receive(self.channels[channel], raw)

    def drain(self, max_rounds: int = 10_000) -> int:
        """Run the worker until nothing is runnable now; returns items attempted."""
        total = 0
        for _ in range(max_rounds):
            n = self.worker.run_once()
            if n == 0:
                return total
            total += n
        raise AssertionError("queue did not drain")

    def items(self, status: str | None = None) -> list:
        q = select(work_items).order_by(work_items.c.id)
        if status:
            q = q.where(work_items.c.status == status)
        with self.db.connect() as conn:
            return conn.execute(q).all()

    def chart(self, mrn: str) -> dict | None:
        with self.db.connect() as conn:
            return chart_read.get_chart(conn, mrn)

    def history(self, mrn: str) -> list[dict]:
        with self.db.connect() as conn:
            return chart_read.history(conn, mrn)


_seq = iter(range(1, 1_000_000))


def pv1(
    cls: str = "I",
    loc: str = "W1^101^A^HOSP",
    visit: str = "V1",
    *,
    admit: str = "",
    discharge: str = "",
    prior: str = "",
    attending: str = "",
) -> str:
    f = [""] * 46
    f[0], f[1], f[2], f[3], f[6], f[7] = "PV1", "1", cls, loc, prior, attending
    f[19] = f"{visit}^^^HOSP^VN" if visit else ""
    f[44], f[45] = admit, discharge
    return "|".join(f)


def adt(
    event: str,
    mrn: str = "M100",
    *,
    time: str = "20260301100000",
    name: str = "DOE^JANE",
    dob: str = "19800101",
    sex: str = "F",
    address: str = "",
    pv1_: str | None = None,
    mrg: str | None = None,
    extra: tuple[str, ...] = (),
    cid: str | None = None,
) -> str:
    """An ADT message as a sender would write it (PID-3 MRN of authority HOSP, type MR)."""
    cid = cid or f"C{next(_seq)}"
    segs = [
        f"MSH|^~\\&|REGADT|HOSP|INTERFACE|HOSP|{time}||ADT^{event}^ADT_A01|{cid}|P|2.5.1",
        f"EVN|{event}|{time}",
        f"PID|1||{mrn}^^^HOSP^MR||{name}||{dob}|{sex}|||{address}",
    ]
    if mrg is not None:
        segs.append(f"MRG|{mrg}^^^HOSP^MR")
    if pv1_ is not None:
        segs.append(pv1_)
    segs.extend(extra)
    return "\r".join(segs) + "\r"


def run(h: Harness, *messages: str) -> None:
    for m in messages:
        out = h.send(m)
        assert out.status == "accepted", (out.status, out.text)
    h.drain()


def visit(h: Harness, mrn: str = "M100", number: str = "V1") -> dict:
    found = [v for v in h.chart(mrn)["visits"] if v["visit_number"] == number]
    assert len(found) == 1, h.chart(mrn)["visits"]
    return found[0]


def errors(h: Harness) -> list:
    return h.items("error")


# -- each event ---------------------------------------------------------------------------------


def test_a01_admit(engine):
    """A01 creates the patient and an admitted inpatient visit with location and admit time."""
    h = Harness(engine)
    run(h, adt("A01", pv1_=pv1(admit="20260301093000", attending="D1^HOUSE^GREG^^^^^^HOSP")))
    c = h.chart("M100")
    assert c["name"]["family"] == "DOE" and c["birth_date"] == "1980-01-01" and c["sex"] == "female"
    v = visit(h)
    assert (v["status"], v["class"], v["location"]) == ("admitted", "inpatient", "W1^101^A^HOSP")
    assert v["admitted_at"] == "2026-03-01T09:30:00+00:00"
    assert v["attending"]["family"] == "HOUSE"


def test_a04_register(engine):
    """A04 registers an outpatient visit (status registered)."""
    h = Harness(engine)
    run(h, adt("A04", pv1_=pv1("O", "CLINIC^^^HOSP")))
    v = visit(h)
    assert (v["status"], v["class"]) == ("registered", "outpatient")


def test_a05_preadmit_then_a01(engine):
    """A05 creates a preadmit visit; the A01 for the same visit number admits it."""
    h = Harness(engine)
    run(h, adt("A05", pv1_=pv1("P")))
    assert visit(h)["status"] == "preadmit"
    run(h, adt("A01", time="20260302100000", pv1_=pv1()))
    assert visit(h)["status"] == "admitted"


def test_a06_and_a07_change_class(engine):
    """A06 turns an outpatient visit inpatient (admitted); A07 turns it back (registered)."""
    h = Harness(engine)
    run(h, adt("A04", pv1_=pv1("O")))
    run(h, adt("A06", time="20260301110000", pv1_=pv1("I")))
    assert (visit(h)["status"], visit(h)["class"]) == ("admitted", "inpatient")
    run(h, adt("A07", time="20260301120000", pv1_=pv1("O")))
    assert (visit(h)["status"], visit(h)["class"]) == ("registered", "outpatient")


def test_a02_transfer_and_a12_cancel(engine):
    """A02 moves the patient and keeps the prior location; A12 moves them back."""
    h = Harness(engine)
    run(h, adt("A01", pv1_=pv1(loc="W1^101^A^HOSP")))
    run(h, adt("A02", time="20260301110000", pv1_=pv1(loc="W2^201^B^HOSP", prior="W1^101^A^HOSP")))
    v = visit(h)
    assert (v["location"], v["prior_location"]) == ("W2^201^B^HOSP", "W1^101^A^HOSP")
    run(h, adt("A12", time="20260301120000", pv1_=pv1(loc="", prior="W2^201^B^HOSP")))
    assert visit(h)["location"] == "W1^101^A^HOSP"
    assert visit(h)["status"] == "admitted"


def test_a03_discharge_and_a13_cancel(engine):
    """A03 discharges with PV1-45; A13 reopens the visit and clears the discharge time."""
    h = Harness(engine)
    run(h, adt("A01", pv1_=pv1()))
    run(h, adt("A03", time="20260303100000", pv1_=pv1(discharge="20260303093000")))
    v = visit(h)
    assert (v["status"], v["discharged_at"]) == ("discharged", "2026-03-03T09:30:00+00:00")
    run(h, adt("A13", time="20260303110000", pv1_=pv1()))
    v = visit(h)
    assert (v["status"], v["discharged_at"]) == ("admitted", None)


def test_a08_empty_is_no_change_and_null_clears(engine):
    """A08: an empty field leaves the value; ``""`` clears it; a changed value replaces it."""
    h = Harness(engine)
    run(h, adt("A01", address="1 HIGH ST^^LEEDS^^LS1^GBR^H", pv1_=pv1()))
    run(h, adt("A08", time="20260301110000", name="DOE^JANET", dob="", sex="", pv1_=pv1(loc="")))
    c = h.chart("M100")
    assert c["name"]["given"] == "JANET"
    assert (c["birth_date"], c["sex"]) == ("1980-01-01", "female")
    assert c["addresses"][0]["city"] == "LEEDS"
    assert visit(h)["location"] == "W1^101^A^HOSP"
    run(h, adt("A08", time="20260301120000", name="DOE^JANET", dob='""', address='""'))
    c = h.chart("M100")
    assert c["birth_date"] is None and c["addresses"] == []
    assert c["name"]["given"] == "JANET"


def test_a11_cancel_admit(engine):
    """A11 marks the visit cancelled; it stays on the chart as cancelled."""
    h = Harness(engine)
    run(h, adt("A01", pv1_=pv1()), adt("A11", time="20260301110000", pv1_=pv1()))
    assert visit(h)["status"] == "cancelled"


def test_a28_adds_and_a31_updates_person(engine):
    """A28 creates the person without a visit; A31 updates demographics only."""
    h = Harness(engine)
    run(h, adt("A28", name="ROE^RICHARD", sex="M"))
    assert h.chart("M100")["visits"] == []
    run(h, adt("A31", time="20260301110000", name="ROE^RICK", sex=""))
    c = h.chart("M100")
    assert (c["name"]["given"], c["sex"], c["visits"]) == ("RICK", "male", [])


def test_a40_merge_moves_visits_and_resolves_old_mrn(engine):
    """A40: the prior patient's visits move to the survivor; the old MRN answers with the
    survivor's chart, and later messages for it land on the survivor."""
    h = Harness(engine)
    run(h, adt("A01", "M1", pv1_=pv1(visit="V1")), adt("A04", "M2", pv1_=pv1("O", visit="V2")))
    run(h, adt("A40", "M1", time="20260301110000", mrg="M2"))
    c = h.chart("M2")
    assert c["mrn"] == "M1" and c["merged_into"] == "M1"
    assert {v["visit_number"] for v in c["visits"]} == {"V1", "V2"}
    run(h, adt("A08", "M2", time="20260301120000", name="DOE^JO"))
    assert h.chart("M1")["name"]["given"] == "JO"
    assert errors(h) == []


def test_a34_and_a39_merge_identifiers(engine):
    """A34 and A39 merge the prior MRN into the surviving one like A40."""
    h = Harness(engine)
    run(h, adt("A28", "M1"), adt("A28", "M2"), adt("A28", "M3"))
    run(h, adt("A34", "M1", time="20260301110000", mrg="M2"))
    run(h, adt("A39", "M1", time="20260301120000", mrg="M3"))
    assert h.chart("M2")["mrn"] == h.chart("M3")["mrn"] == "M1"
    assert set(h.chart("M1")["merged_from"]) == {"M2", "M3"}


def test_a47_changes_the_mrn(engine):
    """A47: the patient now lives under the new MRN; the old one points to it."""
    h = Harness(engine)
    run(h, adt("A01", "OLD1", pv1_=pv1()))
    run(h, adt("A47", "NEW1", time="20260301110000", mrg="OLD1"))
    c = h.chart("OLD1")
    assert c["mrn"] == "NEW1" and c["visits"][0]["visit_number"] == "V1"
    assert "OLD1" not in {i["value"] for i in c["identifiers"]}


# -- out of order ----------------------------------------------------------------------------------


def test_a03_before_a01_is_applied_and_the_late_a01_does_not_reopen(engine):
    """Out of order, applied: an A03 for an unknown visit creates it discharged; the A01 that
    arrives later fills in details but does not reopen the visit."""
    h = Harness(engine)
    run(h, adt("A03", time="20260303100000", pv1_=pv1(discharge="20260303093000")))
    assert visit(h)["status"] == "discharged"
    run(h, adt("A01", time="20260301100000", pv1_=pv1(admit="20260301093000")))
    v = visit(h)
    assert v["status"] == "discharged"
    assert v["admitted_at"] == "2026-03-01T09:30:00+00:00"
    assert errors(h) == []


def test_older_a08_does_not_overwrite_newer_data(engine):
    """Out of order, applied without overwriting: an A08 whose MSH-7 is older than the data
    applied does not change the demographics; the skip is in the chart history."""
    h = Harness(engine)
    run(h, adt("A08", time="20260305100000", name="DOE^NEWER"))
    run(h, adt("A08", time="20260301100000", name="DOE^OLDER"))
    assert h.chart("M100")["name"]["given"] == "NEWER"
    assert any(e["action"] == "ignored_stale" for e in h.history("M100"))
    assert errors(h) == []


def test_cancel_for_unknown_visit_goes_to_the_error_queue(engine):
    """Out of order, held for a clerk: an A11 for a visit that does not exist is an error item
    (reason unknown_visit, at PV1-19, a readable text); the patient's later messages wait behind
    it and flow again once the clerk discards it."""
    h = Harness(engine)
    run(h, adt("A01", pv1_=pv1(visit="V1")))
    h.send(adt("A11", time="20260301110000", pv1_=pv1(visit="V404")))
    h.send(adt("A08", time="20260301120000", name="DOE^LATER"))
    h.drain()
    (err,) = errors(h)
    assert err.reason == "unknown_visit" and err.error_location == "PV1-19"
    assert "visit to cancel is unknown" in err.last_error
    assert h.chart("M100")["name"]["given"] == "JANE"  # the A08 waits, in order
    from interface.desk import errorqueue
    from interface.store import workqueue

    with engine.begin() as conn:
        errorqueue.discard_item(conn, err.id, user="clerk", reason="cancel sent in error", now=h.now)
    h.drain()
    assert h.chart("M100")["name"]["given"] == "LATER"
    assert visit(h)["status"] == "admitted"


def test_cancel_admit_of_discharged_visit_is_out_of_order(engine):
    """An A11 after the A03 contradicts the visit's state: error item reason out_of_order."""
    h = Harness(engine)
    run(h, adt("A01", pv1_=pv1()), adt("A03", time="20260302100000", pv1_=pv1()))
    h.send(adt("A11", time="20260302110000", pv1_=pv1()))
    h.drain()
    (err,) = errors(h)
    assert err.reason == "out_of_order" and "discharged visit" in err.last_error
    assert visit(h)["status"] == "discharged"


def test_unsupported_event_is_refused_at_receipt(engine):
    """An ADT event the chart store cannot apply (A24 link patients) is answered AR 201 at once —
    not AA and then an error item holding the patient's later messages behind it. It is not
    dropped either: the raw message waits in the error queue (destination ``rejected``)."""
    h = Harness(engine)
    out = h.send(adt("A24"))
    assert out.status == "rejected" and out.ack_code == "AR"
    err_seg = next(s for s in out.ack.split(b"\r") if s.startswith(b"ERR"))
    assert err_seg.split(b"|")[2] == b"MSH^1^9^^2" and err_seg.split(b"|")[3].startswith(b"201^")
    assert b"cannot apply event A24" in out.ack
    (err,) = errors(h)
    assert (err.destination, err.reason) == ("rejected", "unsupported_event")
    # the patient's next message is not held behind it
    assert h.send(adt("A08")).ack_code == "AA"
    h.drain()
    assert [i.status for i in h.items() if i.destination == "store"] == ["done"]


def test_every_adt_sample_applies_in_order(engine):
    """sample_messages/adt/*.hl7, sent in file order, all apply and build the documented charts."""
    h = Harness(engine)
    for f in sorted((ROOT / "sample_messages" / "adt").glob("*.hl7")):
        assert h.send(f.read_bytes()).status == "accepted", f.name
    h.drain()
    assert errors(h) == [] and h.items("held") == []
    assert all(i.status == "done" for i in h.items())
