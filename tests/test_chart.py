"""ADT event semantics of the chart store, with ChartUpdates built by hand."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from interface.hl7.errors import HL7Error, PermanentError, RequiredFieldMissing
from interface.mapping.records import (
    CLEAR,
    Address,
    Allergy,
    ChartUpdate,
    Diagnosis,
    Identifier,
    Insurance,
    Merge,
    Name,
    NextOfKin,
    Patient,
    Person,
    Phone,
    Visit,
)
from interface.store import chart, chart_apply, chart_read
from interface.store import chart_schema as cs

T0 = "2026-11-01T08:00:00+00:00"


def ids(*pairs: tuple[str, str, str]) -> list[Identifier]:
    return [Identifier(value=v, authority=a, type=t) for v, a, t in pairs]


def adt(
    event: str,
    mrn: str | None = "M1",
    visit: Visit | None = None,
    *,
    at: str = T0,
    patient: Patient | None = None,
    **kw,
) -> ChartUpdate:
    """An update as the ADT mapping would produce it (PID-3 MRN under HOSP, MR)."""
    if patient is None:
        patient = Patient(identifiers=ids((mrn, "HOSP", "MR")) if mrn else None)
    return ChartUpdate(event=event, mrn=mrn, event_at=at, recorded_at=at, patient=patient, visit=visit, **kw)


def vis(number: str | None = "V1", **kw) -> Visit:
    return Visit(visit_number=number, **kw)


def apply(engine, *updates: ChartUpdate, message_id: int = 1, now=None) -> list[dict]:
    from datetime import datetime, timezone

    now = now or datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    with engine.begin() as conn:
        return chart_apply.apply_updates(conn, list(updates), message_id=message_id, now=now)


def get(engine, mrn: str) -> dict | None:
    with engine.connect() as conn:
        return chart_read.get_chart(conn, mrn)


def only_visit(engine, mrn: str = "M1") -> dict:
    visits = get(engine, mrn)["visits"]
    assert len(visits) == 1, visits
    return visits[0]


def failure(engine, *updates: ChartUpdate) -> HL7Error:
    with pytest.raises(HL7Error) as info:
        apply(engine, *updates)
    return info.value


# -- creating and updating ------------------------------------------------------------------


def test_a01_creates_patient_with_admitted_visit(engine):
    """A01 creates the patient and an admitted visit with location, attending and admit time."""
    p = Patient(
        identifiers=ids(("M1", "HOSP", "MR"), ("999", "NHS", "NH")),
        name=Name(family="Doe", given="Jane", middle="Q"),
        birth_date="1980-01-31",
        sex="F",
    )
    changes = apply(
        engine,
        adt(
            "A01",
            visit=vis(
                class_="inpatient",
                location="W1^101^A",
                attending=Person(id="D1", family="House"),
                admitted_at="2026-11-01T07:55:00+00:00",
            ),
            patient=p,
        ),
    )
    c = get(engine, "M1")
    assert c["name"]["family"] == "Doe" and c["name"]["given"] == "Jane"
    assert c["birth_date"] == "1980-01-31" and c["sex"] == "F"
    assert {(i["value"], i["authority"], i["type"]) for i in c["identifiers"]} == {
        ("M1", "HOSP", "MR"),
        ("999", "NHS", "NH"),
    }
    v = only_visit(engine)
    assert v["status"] == "admitted" and v["class"] == "inpatient"
    assert v["location"] == "W1^101^A" and v["attending"]["family"] == "House"
    assert v["admitted_at"] == "2026-11-01T07:55:00+00:00"
    assert c["merged_into"] is None
    assert {"table": "patients", "action": "create"}.items() <= changes[0].items()
    # a row created by the message: its first values in one ``initial`` entry, not one per field
    initial = {ch["table"]: ch for ch in changes if ch["action"] == "initial"}
    assert initial["patients"]["new"]["family"] == "Doe" and initial["patients"]["old"] is None
    assert initial["visits"]["new"]["location"] == "W1^101^A"
    assert not any(ch["action"] == "set" for ch in changes)


def test_a01_without_admit_time_uses_event_time(engine):
    """An admit with no PV1-44 takes the event time as admitted_at."""
    apply(engine, adt("A01", visit=vis()))
    assert only_visit(engine)["admitted_at"] == T0


def test_a04_registers_visit(engine):
    """A04 creates a registered visit."""
    apply(engine, adt("A04", visit=vis(class_="outpatient")))
    v = only_visit(engine)
    assert v["status"] == "registered" and v["class"] == "outpatient"


def test_a05_preadmit_then_a01_admits(engine):
    """A05 creates a pre-admitted visit; the A01 for it admits it."""
    apply(engine, adt("A05", visit=vis(expected_admit_at="2026-11-05T09:00:00")))
    assert only_visit(engine)["status"] == "preadmit"
    assert only_visit(engine)["expected_admit_at"] == "2026-11-05T09:00:00"
    apply(engine, adt("A01", visit=vis(location="W1")))
    v = only_visit(engine)
    assert v["status"] == "admitted" and v["location"] == "W1"


def test_a05_after_admit_does_not_downgrade(engine):
    """A late A05 for an admitted visit updates details but keeps it admitted."""
    apply(engine, adt("A01", visit=vis()))
    apply(engine, adt("A05", visit=vis(hospital_service="MED")))
    v = only_visit(engine)
    assert v["status"] == "admitted" and v["hospital_service"] == "MED"


def test_a06_outpatient_to_inpatient(engine):
    """A06 makes a registered outpatient visit an admitted inpatient one."""
    apply(engine, adt("A04", visit=vis(class_="outpatient")))
    apply(engine, adt("A06", visit=vis()))
    v = only_visit(engine)
    assert v["status"] == "admitted" and v["class"] == "inpatient"


def test_a06_with_new_visit_number_renumbers(engine):
    """An A06 whose MRG-5 names the outpatient visit renumbers it to PV1-19."""
    apply(engine, adt("A04", visit=vis("OP1", class_="outpatient")))
    apply(engine, adt("A06", visit=vis("IP1", class_="inpatient"), merge=Merge(prior_visit_number="OP1")))
    v = only_visit(engine)
    assert v["visit_number"] == "IP1" and v["status"] == "admitted"


def test_a07_inpatient_to_outpatient(engine):
    """A07 makes an admitted inpatient visit a registered outpatient one."""
    apply(engine, adt("A01", visit=vis(class_="inpatient")))
    apply(engine, adt("A07", visit=vis()))
    v = only_visit(engine)
    assert v["status"] == "registered" and v["class"] == "outpatient"


def test_a02_transfer_moves_location(engine):
    """A02 sets the new location and keeps the old one as prior location."""
    apply(engine, adt("A01", visit=vis(location="ED^1")))
    apply(engine, adt("A02", visit=vis(location="W2^5")))
    v = only_visit(engine)
    assert v["location"] == "W2^5" and v["prior_location"] == "ED^1"
    assert v["status"] == "admitted"


def test_a02_for_unknown_visit_creates_admitted_visit(engine):
    """A transfer for a visit never admitted here creates it, admitted, at the new location."""
    apply(engine, adt("A02", visit=vis(location="W2", prior_location="ED")))
    v = only_visit(engine)
    assert (v["status"], v["location"], v["prior_location"]) == ("admitted", "W2", "ED")


def test_a17_swap_moves_both_patients(engine):
    """A17 (two updates) swaps the beds of two patients."""
    apply(engine, adt("A01", "M1", vis("V1", location="B1")), adt("A01", "M2", vis("V2", location="B2")))
    apply(engine, adt("A17", "M1", vis("V1", location="B2")), adt("A17", "M2", vis("V2", location="B1")))
    assert only_visit(engine, "M1")["location"] == "B2"
    assert only_visit(engine, "M2")["location"] == "B1"


def test_a03_discharges(engine):
    """A03 discharges the visit with PV1-45 (or the event time) and disposition."""
    apply(engine, adt("A01", visit=vis()))
    apply(
        engine, adt("A03", visit=vis(discharged_at="2026-11-03T10:00:00+00:00", discharge_disposition="home"))
    )
    v = only_visit(engine)
    assert v["status"] == "discharged" and v["discharged_at"] == "2026-11-03T10:00:00+00:00"
    assert v["discharge_disposition"] == "home"


def test_a03_before_a01_creates_discharged_visit(engine):
    """Out of order: an A03 for an unknown visit creates it as discharged; a late A01 keeps it so."""
    apply(engine, adt("A03", visit=vis(admitted_at="2026-11-01T07:00", location="W1")))
    v = only_visit(engine)
    assert v["status"] == "discharged" and v["discharged_at"] == T0
    apply(engine, adt("A01", visit=vis(attending=Person(id="D9"))))
    v = only_visit(engine)
    assert v["status"] == "discharged" and v["attending"]["id"] == "D9"


def test_a08_updates_and_empty_means_no_change(engine):
    """A08 changes what it carries; None fields leave stored values; CLEAR clears them."""
    p = Patient(
        identifiers=ids(("M1", "HOSP", "MR")),
        name=Name(family="Doe", given="Jane"),
        birth_date="1980-01-31",
        sex="F",
        marital_status="S",
        language="en",
    )
    apply(engine, adt("A01", visit=vis(location="W1", hospital_service="MED"), patient=p))
    p2 = Patient(name=Name(family="Smith"), marital_status="M", language=CLEAR)
    apply(engine, adt("A08", visit=vis(hospital_service=CLEAR), patient=p2, at="2026-11-02T00:00:00+00:00"))
    c = get(engine, "M1")
    assert c["name"]["family"] == "Smith" and c["name"]["given"] == "Jane"
    assert c["birth_date"] == "1980-01-31" and c["marital_status"] == "M"
    assert c["language"] is None
    v = only_visit(engine)
    assert v["location"] == "W1" and v["hospital_service"] is None and v["status"] == "admitted"


def test_a08_without_pv1_leaves_visits_alone(engine):
    """A demographics-only A08 (no PV1) neither creates nor changes visits."""
    apply(engine, adt("A08", visit=None, patient=Patient(name=Name(family="Doe"))))
    assert get(engine, "M1")["visits"] == []


def test_a08_for_unknown_patient_creates_it(engine):
    """An A08 for an MRN not seen before creates the patient (documented upsert)."""
    apply(engine, adt("A08", patient=Patient(name=Name(family="New"))))
    assert get(engine, "M1")["name"]["family"] == "New"


def test_a08_mrn_only_keeps_other_identifiers(engine):
    """Identifiers merge: an A08 carrying only the MRN does not erase the NHS number."""
    apply(
        engine,
        adt("A01", visit=vis(), patient=Patient(identifiers=ids(("M1", "HOSP", "MR"), ("999", "NHS", "NH")))),
    )
    apply(engine, adt("A08", visit=vis(), patient=Patient(identifiers=ids(("M1", "HOSP", "MR")))))
    values = {i["value"] for i in get(engine, "M1")["identifiers"]}
    assert values == {"M1", "999"}


def test_stale_a08_does_not_overwrite_newer_data(engine):
    """An A08 recorded before the data it would overwrite is skipped, and the history says so."""
    apply(
        engine,
        adt(
            "A08",
            patient=Patient(name=Name(family="New")),
            visit=vis(location="W2"),
            at="2026-11-02T10:00:00+00:00",
        ),
    )
    changes = apply(
        engine,
        adt(
            "A08",
            patient=Patient(name=Name(family="Old")),
            visit=vis(location="W1"),
            at="2026-11-02T09:00:00+00:00",
        ),
        message_id=2,
    )
    c = get(engine, "M1")
    assert c["name"]["family"] == "New" and c["visits"][0]["location"] == "W2"
    assert {ch["action"] for ch in changes} == {"ignored_stale"}
    with engine.connect() as conn:
        hist = chart_read.history(conn, "M1")
    assert any(h["action"] == "ignored_stale" and h["message_id"] == 2 for h in hist)


def test_lists_replace_when_given_and_stay_when_none(engine):
    """Addresses, phones, next of kin, insurance, allergies are replaced when sent, kept when None."""
    p = Patient(
        addresses=[Address(street="1 Main St", city="Town", type="H")],
        phones=[Phone(number="555-1", use="PRN")],
    )
    apply(
        engine,
        adt(
            "A01",
            visit=vis(),
            patient=p,
            next_of_kin=[NextOfKin(name=Name(family="Doe", given="John"), relationship="SPO")],
            insurance=[
                Insurance(plan="P1", company="Blue", member_id="X1", group="G1"),
                Insurance(plan="P2", company="Red", member_id="X2"),
            ],
            allergies=[Allergy(code="PCN", description="Penicillin", severity="SV")],
        ),
    )
    apply(
        engine,
        adt("A08", patient=Patient(addresses=[Address(street="2 High St")]), insurance=None, allergies=CLEAR),
    )
    c = get(engine, "M1")
    assert [a["street"] for a in c["addresses"]] == ["2 High St"]
    assert [p["number"] for p in c["phones"]] == ["555-1"]
    assert c["next_of_kin"][0]["name"]["given"] == "John"
    assert c["next_of_kin"][0]["relationship"] == "SPO"
    assert [(i["plan"], i["company"], i["member_id"], i["group"]) for i in c["insurance"]] == [
        ("P1", "Blue", "X1", "G1"),
        ("P2", "Red", "X2", None),
    ]
    assert c["allergies"] == []


def test_diagnoses_belong_to_the_visit(engine):
    """Diagnoses replace those of the message's visit only."""
    apply(engine, adt("A01", visit=vis("V1"), diagnoses=[Diagnosis(code="I10", type="A")]))
    apply(engine, adt("A01", visit=vis("V2"), diagnoses=[Diagnosis(code="J18", type="A")]))
    apply(engine, adt("A08", visit=vis("V1"), diagnoses=[Diagnosis(code="I11", type="F")]))
    dx = {(d["visit_number"], d["code"]) for d in get(engine, "M1")["diagnoses"]}
    assert dx == {("V1", "I11"), ("V2", "J18")}


def test_other_names_are_added_not_replaced(engine):
    """Other names accumulate (aliases, maiden names) and are not duplicated."""
    apply(engine, adt("A01", visit=vis(), patient=Patient(other_names=[Name(family="Roe", type="M")])))
    apply(
        engine,
        adt(
            "A08", patient=Patient(other_names=[Name(family="Roe", type="M"), Name(family="Alias", type="A")])
        ),
    )
    names = [(n["family"], n["type"]) for n in get(engine, "M1")["other_names"]]
    assert names == [("Roe", "M"), ("Alias", "A")]


# -- cancels ----------------------------------------------------------------------------------


def test_a11_cancels_admit(engine):
    """A11 marks the admitted visit cancelled."""
    apply(engine, adt("A01", visit=vis()))
    apply(engine, adt("A11", visit=vis()))
    assert only_visit(engine)["status"] == "cancelled"


def test_a11_then_a01_readmits(engine):
    """A visit cancelled by mistake is admitted again by a new A01."""
    apply(engine, adt("A01", visit=vis()), adt("A11", visit=vis()))
    apply(engine, adt("A01", visit=vis()))
    assert only_visit(engine)["status"] == "admitted"


@pytest.mark.parametrize("event", ["A11", "A12", "A13"])
def test_cancel_for_unknown_visit_is_unknown_visit(engine, event):
    """A11/A12/A13 for a visit that does not exist is an unknown_visit error, with no changes."""
    apply(engine, adt("A01", visit=vis("V1")))
    err = failure(engine, adt(event, visit=vis("V404")))
    assert isinstance(err, PermanentError) and err.reason == "unknown_visit"
    assert str(err.location) == "PV1-19"
    err = failure(engine, adt(event, "M404", visit=vis("V1")))
    assert err.reason == "unknown_visit"
    assert get(engine, "M404") is None


def test_a11_of_discharged_visit_is_out_of_order(engine):
    """A11 for a discharged visit needs the discharge cancelled first: out_of_order."""
    apply(engine, adt("A01", visit=vis()), adt("A03", visit=vis()))
    assert failure(engine, adt("A11", visit=vis())).reason == "out_of_order"
    assert only_visit(engine)["status"] == "discharged"


def test_a12_cancel_transfer_restores_locations(engine):
    """A12 puts the patient back where they were and restores the prior location before that."""
    apply(engine, adt("A01", visit=vis(location="ED")))
    apply(engine, adt("A02", visit=vis(location="W1")))
    apply(engine, adt("A02", visit=vis(location="W2")))
    apply(engine, adt("A12", visit=vis()))
    v = only_visit(engine)
    assert (v["location"], v["prior_location"]) == ("W1", "ED")
    apply(engine, adt("A12", visit=vis()))
    v = only_visit(engine)
    assert (v["location"], v["prior_location"]) == ("ED", None)


def test_a12_uses_pv1_3_as_the_location_returned_to(engine):
    """An A12 carrying PV1-3 (the location before the transfer, as Epic sends) wins."""
    apply(engine, adt("A01", visit=vis(location="ED")), adt("A02", visit=vis(location="W1")))
    apply(engine, adt("A12", visit=vis(location="ED", prior_location="W1")))
    v = only_visit(engine)
    assert (v["location"], v["prior_location"]) == ("ED", None)


def test_a12_without_transfer_is_out_of_order(engine):
    """A12 for a visit never transferred is out_of_order."""
    apply(engine, adt("A01", visit=vis(location="ED")))
    assert failure(engine, adt("A12", visit=vis())).reason == "out_of_order"


def test_a13_cancel_discharge_reopens(engine):
    """A13 makes the visit admitted again and clears discharged_at and disposition."""
    apply(engine, adt("A01", visit=vis()))
    apply(engine, adt("A03", visit=vis(discharged_at="2026-11-03T10:00", discharge_disposition="home")))
    apply(engine, adt("A13", visit=vis()))
    v = only_visit(engine)
    assert v["status"] == "admitted" and v["discharged_at"] is None
    assert v["discharge_disposition"] is None


def test_a13_restores_registered_outpatient(engine):
    """A13 of a discharged outpatient visit returns it to registered (its status before)."""
    apply(engine, adt("A04", visit=vis()), adt("A03", visit=vis()))
    apply(engine, adt("A13", visit=vis()))
    assert only_visit(engine)["status"] == "registered"


def test_a38_cancels_preadmit_only(engine):
    """A38 cancels a pre-admit; for an admitted visit it is out_of_order."""
    apply(engine, adt("A05", visit=vis("V1")), adt("A38", visit=vis("V1")))
    assert only_visit(engine)["status"] == "cancelled"
    apply(engine, adt("A01", visit=vis("V2")))
    assert failure(engine, adt("A38", visit=vis("V2"))).reason == "out_of_order"


def test_a50_changes_visit_number(engine):
    """A50 renumbers the visit named in MRG-5; an unknown one is unknown_visit."""
    apply(engine, adt("A01", visit=vis("OLD")))
    apply(engine, adt("A50", visit=vis("NEW"), merge=Merge(prior_visit_number="OLD")))
    assert only_visit(engine)["visit_number"] == "NEW"
    err = failure(engine, adt("A50", visit=vis("X"), merge=Merge(prior_visit_number="OLD")))
    assert err.reason == "unknown_visit"


# -- persons --------------------------------------------------------------------------------


def test_a28_adds_person_without_visit(engine):
    """A28 creates the person; A31 updates it; neither creates visits."""
    apply(engine, adt("A28", visit=vis(), patient=Patient(name=Name(family="Doe"), sex="F")))
    apply(engine, adt("A31", visit=vis(), patient=Patient(name=Name(given="Jo"))))
    c = get(engine, "M1")
    assert (c["name"]["family"], c["name"]["given"], c["sex"]) == ("Doe", "Jo", "F")
    assert c["visits"] == []


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["A99", "A20", "A29", "", "R01"])
def test_unsupported_event(engine, event):
    """Events the chart store does not handle raise code 201, reason unsupported_event."""
    err = failure(engine, adt(event, visit=vis()))
    assert err.code == "201" and err.reason == "unsupported_event"
    assert get(engine, "M1") is None


def test_missing_mrn_is_missing_field(engine):
    """An update without an MRN is a missing_field error at PID-3."""
    err = failure(engine, adt("A01", None, visit=vis()))
    assert isinstance(err, RequiredFieldMissing) and err.reason == "missing_field"
    assert str(err.location) == "PID-3"


def test_failed_message_changes_nothing(engine):
    """When one update of a message fails, the transaction rolls back everything it did."""
    err = failure(engine, adt("A01", "M1", vis()), adt("A11", "M2", vis()))
    assert err.reason == "unknown_visit"
    assert get(engine, "M1") is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cs.chart_history)).scalar() == 0


# -- history and changes ----------------------------------------------------------------------


def test_history_records_each_field_change_with_message(engine):
    """Every changed field is in the history with old value, new value, message and event."""
    apply(
        engine, adt("A01", visit=vis(location="W1"), patient=Patient(name=Name(family="Doe"))), message_id=10
    )
    changes = apply(
        engine,
        adt("A08", patient=Patient(name=Name(family="Roe")), at="2026-11-02T00:00:00+00:00"),
        message_id=11,
    )
    assert [(c["field"], c["old"], c["new"]) for c in changes] == [("family", "Doe", "Roe")]
    with engine.connect() as conn:
        hist = chart_read.history(conn, "M1")
    family = [h for h in hist if h["field"] == "family"]
    assert [(h["old"], h["new"], h["message_id"], h["event"]) for h in family] == [("Doe", "Roe", 11, "A08")]
    initial = [h for h in hist if h["action"] == "initial" and h["table"] == "patients"]
    assert [(json.loads(h["new"])["family"], h["message_id"], h["event"]) for h in initial] == [
        ("Doe", 10, "A01")
    ]


def test_changes_in_rolled_back_transaction_write_nothing(engine, now):
    """apply_updates never commits: a caller that rolls back (interface test) leaves no rows."""
    conn = engine.connect()
    tx = conn.begin()
    changes = chart_apply.apply_updates(conn, [adt("A01", visit=vis())], message_id=1, now=now)
    tx.rollback()
    conn.close()
    assert changes and get(engine, "M1") is None


def test_resend_changes_nothing(engine):
    """Applying the same A08 twice records no changes the second time."""
    u = adt("A08", visit=vis(location="W1"), patient=Patient(name=Name(family="Doe")))
    apply(engine, u)
    assert apply(engine, u, message_id=2) == []


def test_release_held_called_when_patient_created(engine, monkeypatch):
    """A newly known MRN releases documents held for it (interface.store.workqueue.release_held)."""
    import interface.store.workqueue as queue

    calls = []
    monkeypatch.setattr(queue, "release_held", lambda conn, mrn, now: calls.append(mrn), raising=False)
    apply(engine, adt("A04", visit=vis()))
    apply(engine, adt("A08", visit=vis()))
    assert calls == ["M1"]
