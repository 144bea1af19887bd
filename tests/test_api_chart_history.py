"""What the API shows of a chart: each visit's location timeline with times (A01, A02 transfers,
A12 cancel transfer, A03/A13), the chart's change history paged, identifiers masked as on the
chart page unless revealed with a reason, and the response models in the OpenAPI document.
Raw ADT bytes through the real channel -> the REST API."""

from __future__ import annotations

import json

from sqlalchemy import select

from interface.desk import masking
from interface.store.schema import audit
from tests.test_adt_events import Harness, adt, pv1
from tests.test_web_api import app, channels, client, clock, fast_hashing, h, tokens  # noqa: F401


def run(hh: Harness, *messages: str) -> None:
    for m in messages:
        out = hh.send(m)
        assert out.status == "accepted" and b"MSA|AA|" in out.ack, out.ack
    hh.drain()
    assert hh.items("error") == []


def test_visit_locations_with_times_through_transfers_cancel_and_discharge(engine, client, tokens):
    """A01 opens W1 at PV1-44; each A02 closes the last location and opens the new one at the
    event time (EVN-2); A12 marks the cancelled transfer and reopens the one before; A03 closes
    it at PV1-45; A13 reopens it."""
    hh = Harness(engine)
    run(
        hh,
        adt("A01", time="20260301093000", pv1_=pv1(loc="W1^1^A^HOSP", admit="20260301090000")),
        adt("A02", time="20260301110000", pv1_=pv1(loc="W2^2^B^HOSP")),
        adt("A02", time="20260301120000", pv1_=pv1(loc="W3^3^C^HOSP")),
        adt("A12", time="20260301130000", pv1_=pv1(loc="W2^2^B^HOSP")),
        adt("A03", time="20260301150000", pv1_=pv1(loc="", discharge="20260301143000")),
    )
    r = client.get("/api/patients/M100", headers=h(tokens["clerk"]))
    assert r.status_code == 200
    [v] = r.json()["visits"]
    got = [(l["location"], l["from"], l["to"], l["event"], l["cancelled_at"]) for l in v["locations"]]
    assert got == [
        ("W1^1^A^HOSP", "2026-03-01T09:00:00+00:00", "2026-03-01T11:00:00+00:00", "A01", None),
        ("W2^2^B^HOSP", "2026-03-01T11:00:00+00:00", "2026-03-01T14:30:00+00:00", "A02", None),
        (
            "W3^3^C^HOSP",
            "2026-03-01T12:00:00+00:00",
            "2026-03-01T13:00:00+00:00",
            "A02",
            "2026-03-01T13:00:00+00:00",
        ),
    ]
    run(hh, adt("A13", time="20260301160000", pv1_=pv1(loc="")))
    [v] = client.get("/api/patients/M100", headers=h(tokens["clerk"])).json()["visits"]
    assert v["locations"][1]["to"] is None and v["status"] == "admitted"


def test_successive_a12_walk_back_the_timeline(engine, client, tokens):
    """Two A12s in a row cancel both transfers: the patient is back in the first location, whose
    row is open again; both cancelled rows are kept and marked."""
    hh = Harness(engine)
    run(
        hh,
        adt("A01", time="20260301090000", pv1_=pv1(loc="W1")),
        adt("A02", time="20260301100000", pv1_=pv1(loc="W2")),
        adt("A02", time="20260301110000", pv1_=pv1(loc="W3")),
        adt("A12", time="20260301120000", pv1_=pv1(loc="")),
        adt("A12", time="20260301130000", pv1_=pv1(loc="")),
    )
    [v] = client.get("/api/patients/M100", headers=h(tokens["clerk"])).json()["visits"]
    assert v["location"] == "W1"
    assert [(l["location"], l["to"] is None, l["cancelled_at"] is not None) for l in v["locations"]] == [
        ("W1", True, False),
        ("W2", False, True),
        ("W3", False, True),
    ]


def test_history_is_paged_newest_first_and_masked(engine, client, tokens):
    """GET /api/patients/{mrn}/history pages the chart history newest first (before_id); identifier
    values are masked unless revealed with a reason (400 without one; the reveal is audited)."""
    hh = Harness(engine)
    run(
        hh,
        adt("A01", time="20260301090000", pv1_=pv1(), extra=()).replace(
            "M100^^^HOSP^MR", "M100^^^HOSP^MR~123-45-6789^^^SSA^SS"
        ),
        adt("A08", time="20260301100000", name="DOE^JANET"),
        adt("A02", time="20260301110000", pv1_=pv1(loc="W2")),
    )
    total = len(hh.history("M100"))
    seen, before = [], None
    while True:
        params = {"limit": 3, **({"before_id": before} if before else {})}
        r = client.get("/api/patients/M100/history", params=params, headers=h(tokens["clerk"]))
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["entries"]) <= 3 and body["revealed"] is False
        seen += body["entries"]
        before = body["next_before_id"]
        if before is None:
            break
    ids = [e["id"] for e in seen]
    assert len(ids) == total and ids == sorted(ids, reverse=True)
    added = [e for e in seen if e["table"] == "patient_identifiers"]
    assert added and all(e["new"] == masking.MASK for e in added)
    assert not any("123-45-6789" in json.dumps(e) for e in seen)
    assert any(e["field"] == "given" and e["new"] == "JANET" for e in seen)  # not identifying
    assert (
        client.get(
            "/api/patients/M100/history", params={"reveal": "true"}, headers=h(tokens["clerk"])
        ).status_code
        == 400
    )
    r = client.get(
        "/api/patients/M100/history",
        params={"reveal": "true", "reason": "audit query 7", "limit": 1000},
        headers=h(tokens["clerk"]),
    )
    assert r.json()["revealed"] and "123-45-6789" in json.dumps(r.json()["entries"])
    with engine.connect() as conn:
        reasons = (
            conn.execute(
                select(audit.c.reason).where(audit.c.action == "reveal", audit.c.target_id == "M100")
            )
            .scalars()
            .all()
        )
    assert reasons == ["audit query 7"]
    assert client.get("/api/patients/NOPE/history", headers=h(tokens["clerk"])).status_code == 404


def test_chart_masks_what_the_chart_page_masks(engine, client, tokens):
    """GET /api/patients/{mrn} masks the SSN, identifiers other than the MRN and insurance member
    ids; reveal=true with a reason shows them."""
    hh = Harness(engine)
    in1 = "|".join(["IN1", "1", "PLAN1", "", "ACME"] + [""] * 31 + ["MEMBER-998877"])
    raw = adt("A01", pv1_=pv1(), extra=(in1,)).replace(
        "M100^^^HOSP^MR", "M100^^^HOSP^MR~123-45-6789^^^SSA^SS"
    )
    run(hh, raw)
    body = client.get("/api/patients/M100", headers=h(tokens["clerk"])).json()
    assert body["revealed"] is False
    assert body["ssn"] == "****6789" and "123-45-6789" not in json.dumps(body)
    assert {i["value"] for i in body["identifiers"]} == {"M100", "****6789"}
    assert body["insurance"][0]["member_id"] == "****8877"
    body = client.get(
        "/api/patients/M100", params={"reveal": "true", "reason": "billing"}, headers=h(tokens["clerk"])
    ).json()
    assert body["ssn"] == "123-45-6789" and body["insurance"][0]["member_id"] == "MEMBER-998877"


def test_openapi_documents_the_chart_response_models(app):
    """The OpenAPI document has the history route and typed answers: the chart's visits with
    their locations (from, to), the history page, the message detail's warnings."""
    doc = app.openapi()
    schemas = doc["components"]["schemas"]
    assert "/api/patients/{mrn}/history" in doc["paths"]
    ok = doc["paths"]["/api/patients/{mrn}"]["get"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"]["$ref"].endswith("/PatientChart")
    assert set(schemas["LocationOut"]["properties"]) >= {"location", "from", "to"}
    assert "locations" in schemas["VisitOut"]["properties"]
    assert "entries" in schemas["HistoryPage"]["properties"]
    assert "warnings" in schemas["MessageDetail"]["properties"]
