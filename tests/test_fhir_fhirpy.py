"""A second stock client nobody here wrote, fhirpy (its sync client, over real HTTP on loopback,
with a scoped API token), reads and searches the server: first the seeded sample charts, then
the whole README walkthrough — every sample ADT and MDM message sent through the engine's
pipeline — with the same patients, encounters and documents read back through FHIR as the chart
store and the document index hold them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.patient import Patient
from fhirpy import SyncFHIRClient
from sqlalchemy import select

from interface.desk import users
from interface.store import chart_read, document_read
from interface.store import chart_schema as cs
from interface.store.documents import DocumentSettings
from interface.web.app import WebThread, create_app
from interface.web.fhir.encounter import location_text
from tests.conftest import Clock
from tests.test_fhir import tokens  # noqa: F401  (fixture)
from tests.test_pages import NOW, SAMPLES, _config, _parts, app, make_user, seeded  # noqa: F401
from tests.test_web_api import fast_hashing  # noqa: F401  (fixture)

WALK_NOW = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)


def serve(app):  # noqa: F811
    web = WebThread(app, "127.0.0.1", 0)
    web.start()
    return web, f"http://127.0.0.1:{web.port}/fhir"


def valid(resource) -> dict:
    """What fhirpy got, validated by the fhir.resources model of its type."""
    data = resource.serialize()
    get_fhir_model_class(data["resourceType"]).model_validate(data)
    return data


@pytest.fixture
def client(app, tokens):  # noqa: F811
    web, base = serve(app)
    try:
        yield SyncFHIRClient(base, authorization=f"Bearer {tokens['carl']}")
    finally:
        web.stop()


def test_fhirpy_reads_and_searches_the_sample_charts(client):
    p = client.reference("Patient", "100001").to_resource()
    assert valid(p)["name"][0]["family"] == "RIVERA" and p["gender"] == "female"
    found = client.resources("Patient").search(family="riv").fetch()
    assert [x.id for x in found] == ["100001"]
    assert client.resources("Patient").search(gender="female").count() == 2
    paged = client.resources("Patient").search(gender="female").limit(1).fetch_all()  # follows next
    assert sorted(x.id for x in paged) == ["100001", "100003"]
    (enc,) = client.resources("Encounter").search(patient="Patient/100001").fetch()
    assert valid(enc)["identifier"][0]["value"] == "V5001"
    docs = client.resources("DocumentReference").search(patient="100001", type="DS").fetch()
    assert [valid(d)["id"] for d in docs] == ["DOC-3001"]
    allergies = client.resources("AllergyIntolerance").search(patient="100001").fetch()
    assert [valid(a)["code"]["text"] for a in allergies] == ["Penicillin"]
    assert client.resources("Patient").search(family="nobody").first() is None


@pytest.fixture
def walked(engine, fast_hashing):  # noqa: F811
    """A fresh database with the README walkthrough sent through the engine: every ADT sample,
    then every MDM sample, in file order; the worker drained."""
    _channels, _mappings, rules = _config()
    clock = Clock(NOW)
    s = _parts(engine, clock, DocumentSettings(content_dir=None, rules=rules))
    for feed in ("adt", "mdm"):
        for f in sorted((SAMPLES / feed).glob("*.hl7")):
            out = s.engine.receive(s.channels[feed], f.read_bytes())
            assert out.status in ("accepted", "processed"), (f.name, out.status)
    s.drain(100)
    make_user(engine, "carl", "clerk")
    with engine.begin() as conn:
        token = users.new_token(conn, "carl", now=WALK_NOW, scopes="user/*.read")
    return s, token


def test_the_whole_walkthrough_reads_back_through_fhir(walked):
    s, token = walked
    web_app = create_app(
        s.db,
        channels=list(s.channels.values()),
        document_settings=s.pipeline.document_settings,
        clock=lambda: WALK_NOW,
    )
    with s.db.connect() as conn:
        live = [
            r.mrn for r in conn.execute(select(cs.patients.c.mrn).where(cs.patients.c.merged_into.is_(None)))
        ]
        gone = dict(
            conn.execute(
                select(cs.patients.c.mrn, cs.patients.c.merged_into).where(
                    cs.patients.c.merged_into.isnot(None)
                )
            ).all()
        )
        charts = {m: chart_read.get_chart(conn, m) for m in live}
        docs = {m: document_read.list_documents(conn, mrn=m) for m in live}
    assert live and gone  # the samples merge and rename
    web, base = serve(web_app)
    try:
        fc = SyncFHIRClient(base, authorization=f"Bearer {token}")
        for mrn, chart in charts.items():
            p = valid(fc.reference("Patient", mrn).to_resource())
            assert p["active"] is True and p["name"][0]["family"] == chart["name"]["family"]
            merged = {ln["other"]["reference"] for ln in p.get("link", [])}
            assert merged == {f"Patient/{m}" for m in chart["merged_from"]}
            # its versions: the newest is the read, each reads back by vread, newest first
            history = fc.execute(f"Patient/{mrn}/_history", method="get")
            Bundle.model_validate(history)
            shown = [e["resource"] for e in history["entry"]]
            assert history["type"] == "history" and shown[0] == p
            ids = [int(v["meta"]["versionId"]) for v in shown]
            assert ids == sorted(set(ids), reverse=True)
            for v in shown:
                again = fc.execute(f"Patient/{mrn}/_history/{v['meta']['versionId']}", method="get")
                assert again == Patient.model_validate(again).model_dump(mode="json") == v
            encounters = fc.resources("Encounter").search(patient=mrn).fetch_all()
            assert sorted(
                e["identifier"][0]["value"] for e in map(valid, encounters) if e.get("identifier")
            ) == sorted(v["visit_number"] for v in chart["visits"] if v["visit_number"])
            assert len(encounters) == len(chart["visits"])
            for e in encounters:
                visit = next(v for v in chart["visits"] if v["visit_number"] == e["identifier"][0]["value"])
                shown = [x["location"]["display"] for x in e.get("location", [])]
                expected = [location_text(x["location"]) for x in visit["locations"] if not x["cancelled_at"]]
                if not visit["locations"] and visit["location"]:
                    expected = [location_text(visit["location"])]
                assert shown == expected
            found = fc.resources("DocumentReference").search(patient=mrn).fetch_all()
            assert sorted(valid(d)["id"] for d in found) == sorted(d["document_number"] for d in docs[mrn])
        for old, survivor in gone.items():
            stub = valid(fc.reference("Patient", old).to_resource())
            assert stub["active"] is False
            assert stub["link"][0]["type"] == "replaced-by"
        # the edited and replaced documents keep their history
        edited = [d for ds in docs.values() for d in ds if d["version"] > 1]
        assert edited
        for d in edited:
            history = fc.execute(f"DocumentReference/{d['document_number']}/_history", method="get")
            assert history["type"] == "history" and history["total"] >= 2
    finally:
        web.stop()
