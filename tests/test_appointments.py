"""SIU S12..S17, S26 end to end: HL7 text -> Engine.receive -> the queue -> Worker -> the
appointments table, through the real channel (channels/siu.yaml) and mapping (mappings/siu.yaml).
Each event, the order per patient, unknown appointments (error items with reason and location),
unknown patients (held), and the sample messages."""

from __future__ import annotations

from sqlalchemy import select

from interface.store import appointments as A
from interface.store.appointment_schema import appointments as table
from interface.store.schema import work_items
from tests.test_adt_events import ROOT, Harness, adt

_seq = iter(range(1, 1_000_000))


def siu(
    event: str,
    filler: str = "A1",
    *,
    mrn: str = "100002",
    placer: str = "",
    start: str = "20261208093000",
    minutes: str = "30",
    end: str = "",
    status: str = "",
    location: str = "CLIN^RM1^^HOSP",
    provider: str = "4001^HOUSE^GREGORY^^^DR^^^HOSP",
    reason: str = "FOLLOWUP^Follow-up visit",
    time: str = "20261201090000",
) -> str:
    """An SIU as a scheduling system writes it (SCH, PID, RGS, AIS, AIL, AIP)."""
    sch = [""] * 26
    sch[0], sch[1], sch[2], sch[6], sch[7] = "SCH", placer, filler, "EVT^Event", reason
    sch[9], sch[10] = minutes, "MIN" if minutes else ""
    sch[11] = f"^^{minutes}^{start}^{end}" if start or end else ""
    sch[25] = status
    segs = [
        f"MSH|^~\\&|SCHED|HOSP|INTERFACE|HOSP|{time}||SIU^{event}^SIU_S12|S{next(_seq)}|P|2.5.1",
        "|".join(sch),
        f"PID|1||{mrn}^^^HOSP^MR||CHEN^WEI||19571102|M",
        "RGS|1|A",
        f"AIL|1|A|{location}",
        f"AIP|1|A|{provider}",
    ]
    return "\r".join(segs) + "\r"


def send(h: Harness, *msgs: str) -> None:
    for m in msgs:
        out = h.send(m, "siu")
        assert out.status == "accepted", (out.status, out.text)
    h.drain()


def appts(h: Harness, **kw) -> list[dict]:
    with h.db.connect() as conn:
        return A.list_appointments(conn, **kw)


def one(h: Harness, filler: str) -> dict:
    with h.db.connect() as conn:
        found = conn.execute(select(table).where(table.c.filler_id == filler)).mappings().all()
    assert len(found) == 1, found
    return dict(found[0])


def patient(engine) -> Harness:
    h = Harness(engine)
    h.send(adt("A28", "100002", name="CHEN^WEI", dob="19571102", sex="M"))
    h.drain()
    return h


def test_s12_books_an_appointment_with_time_location_provider(engine):
    h = patient(engine)
    send(h, siu("S12", "A1", placer="P1"))
    a = one(h, "A1")
    assert a["mrn"] == "100002" and a["placer_id"] == "P1" and a["status"] == "booked"
    assert a["start_at"] == "2026-12-08T09:30:00+00:00"
    assert a["end_at"] == "2026-12-08T10:00:00+00:00"  # start + 30 minutes: no TQ-5 sent
    assert a["location"] == "CLIN^RM1^^HOSP" and a["provider_family"] == "HOUSE"
    assert a["reason"] == "Follow-up visit" and a["last_event"] == "S12" and a["message_id"] is not None


def test_s13_reschedules_s14_modifies(engine):
    h = patient(engine)
    send(h, siu("S12", "A1"))
    send(h, siu("S13", "A1", start="20261210140000", location="CLIN^RM9^^HOSP"))
    a = one(h, "A1")
    assert a["start_at"] == "2026-12-10T14:00:00+00:00" and a["end_at"] == "2026-12-10T14:30:00+00:00"
    assert a["location"] == "CLIN^RM9^^HOSP" and a["status"] == "booked" and a["last_event"] == "S13"
    send(h, siu("S14", "A1", start="", minutes="", location="", provider="4002^WILSON^JAMES"))
    a = one(h, "A1")
    assert a["provider_family"] == "WILSON" and a["location"] == "CLIN^RM9^^HOSP"  # empty: no change
    assert a["start_at"] == "2026-12-10T14:00:00+00:00" and a["last_event"] == "S14"


def test_cancel_discontinue_delete_and_no_show_set_the_status(engine):
    h = patient(engine)
    send(h, *(siu("S12", f"A{i}") for i in range(1, 5)))
    send(h, siu("S15", "A1", status="Booked"), siu("S16", "A2"), siu("S17", "A3"), siu("S26", "A4"))
    assert [one(h, f"A{i}")["status"] for i in range(1, 5)] == [
        "cancelled",
        "discontinued",
        "deleted",
        "noshow",
    ]
    assert {a["filler_id"] for a in appts(h)} == {"A1", "A2", "A4"}  # deleted: no longer listed


def test_sch25_status_is_kept_in_words(engine):
    h = patient(engine)
    send(h, siu("S12", "A1", status="Pending"))
    assert one(h, "A1")["status"] == "pending"
    send(h, siu("S14", "A1", status="Booked"))
    assert one(h, "A1")["status"] == "booked"


def test_events_apply_in_order_per_patient(engine):
    """Booked, moved, cancelled — sent together, applied in arrival order by the queue."""
    h = patient(engine)
    for m in (
        siu("S12", "A1"),
        siu("S13", "A1", start="20261211090000"),
        siu("S15", "A1", start="", minutes=""),
    ):
        assert h.send(m, "siu").status == "accepted"
    h.drain()
    a = one(h, "A1")
    assert a["status"] == "cancelled" and a["start_at"] == "2026-12-11T09:00:00+00:00"
    assert a["last_event"] == "S15"


def test_unknown_appointment_is_an_error_item_at_sch2(engine):
    h = patient(engine)
    send(h, siu("S13", "NOPE"))
    [item] = h.items("error")
    assert item.reason == "unknown_appointment" and item.error_location == "SCH-2"
    assert "NOPE" in item.last_error
    assert appts(h) == []


def test_unknown_appointment_by_placer_only_is_located_at_sch1(engine):
    h = patient(engine)
    send(h, siu("S15", "", placer="P-404"))
    [item] = h.items("error")
    assert item.reason == "unknown_appointment" and item.error_location == "SCH-1"


def test_placer_id_names_the_appointment_when_no_filler_id(engine):
    h = patient(engine)
    send(h, siu("S12", "", placer="P1"), siu("S15", "", placer="P1"))
    assert h.items("error") == []
    with h.db.connect() as conn:
        [row] = conn.execute(select(table)).mappings().all()
    assert row["placer_id"] == "P1" and row["status"] == "cancelled"


def test_s12_for_a_booked_id_is_a_duplicate(engine):
    h = patient(engine)
    send(h, siu("S12", "A1"), siu("S12", "A1", start="20261209090000"))
    [item] = h.items("error")
    assert item.reason == "duplicate_appointment" and item.error_location == "SCH-2"
    assert one(h, "A1")["start_at"] == "2026-12-08T09:30:00+00:00"


def test_an_appointment_of_another_patient_is_not_moved(engine):
    h = patient(engine)
    h.send(adt("A28", "100099"))
    h.drain()
    send(h, siu("S12", "A1"), siu("S13", "A1", mrn="100099", start="20261212090000"))
    [item] = h.items("error")
    assert item.reason == "unknown_appointment" and item.error_location == "PID-3"
    assert one(h, "A1")["mrn"] == "100002"


def test_no_appointment_id_is_a_missing_field(engine):
    h = patient(engine)
    send(h, siu("S12", ""))
    [item] = h.items("error")
    assert item.reason == "missing_field" and item.error_location == "SCH-2"


def test_unknown_patient_is_held_then_applied_when_registered(engine):
    h = Harness(engine)
    send(h, siu("S12", "A1", mrn="100777"))
    assert [i.status for i in h.items()] == ["held"] and appts(h) == []
    h.send(adt("A28", "100777"))
    h.advance(120)
    h.drain()
    assert one(h, "A1")["mrn"] == "100777"


def test_merged_patient_appointments_follow_the_survivor(engine):
    h = Harness(engine)
    h.send(adt("A28", "100002"))
    h.send(adt("A28", "100003"))
    h.drain()
    send(h, siu("S12", "A1", mrn="100003"))
    h.send(adt("A40", "100002", mrg="100003"))
    h.drain()
    send(h, siu("S13", "A1", mrn="100002", start="20261212090000"))  # the survivor's MRN now
    assert h.items("error") == []
    assert one(h, "A1")["start_at"] == "2026-12-12T09:00:00+00:00"


def test_sample_messages_after_the_adt_samples(engine):
    h = Harness(engine)
    for f in sorted((ROOT / "sample_messages" / "adt").glob("*.hl7")):
        assert h.send(f.read_bytes()).status == "accepted"
    h.drain()
    errors_before = len(h.items("error"))
    for f in sorted((ROOT / "sample_messages" / "siu").glob("*.hl7")):
        assert h.send(f.read_bytes(), "siu").status == "accepted", f.name
    h.drain()
    assert len(h.items("error")) == errors_before
    with h.db.connect() as conn:
        rows = {r["filler_id"]: dict(r) for r in conn.execute(select(table)).mappings()}
    assert {k: (v["mrn"], v["status"]) for k, v in rows.items()} == {
        "A5001": ("100002", "booked"),
        "A5002": ("100010", "booked"),
        "A5003": ("100010", "noshow"),
        "A5004": ("100002", "cancelled"),
    }
    assert rows["A5001"]["start_at"] == "2026-12-10T10:00:00+00:00"  # rescheduled by S13
    assert rows["A5001"]["location"] == "CARDIO^RM2^^HOSP"
    # every SIU item done
    with h.db.connect() as conn:
        statuses = (
            conn.execute(select(work_items.c.status).where(work_items.c.channel == "siu")).scalars().all()
        )
    assert statuses == ["done"] * 7
