"""The FHIR R4 face (/fhir): charts and documents loaded through the engine from the sample
messages (tests.test_pages' seeded database), read and searched, each answer parsed back by the
fhir.resources models; errors as OperationOutcome; roles and audit."""

from __future__ import annotations

import base64
import warnings

import pytest
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from sqlalchemy import select

from interface.desk import users
from interface.store.schema import audit
from tests.test_pages import APP_NOW, app, seeded  # noqa: F401  (fixtures)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

FHIR = "application/fhir+json"


@pytest.fixture
def tokens(seeded):  # noqa: F811
    out = {}
    with seeded.db.begin() as conn:
        for name in ("carl", "ann", "aud", "ada"):
            out[name] = users.new_token(conn, name, now=APP_NOW, scopes="user/*.read")
    return out


@pytest.fixture
def fhir(app, tokens):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["authorization"] = f"Bearer {tokens['carl']}"
        c.headers["accept"] = FHIR
        yield c


def ok(r, model):
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR)
    body = r.json()
    assert body["resourceType"] == model.__name__
    return model.model_validate(body)


def outcome(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR)
    oo = OperationOutcome.model_validate(r.json())
    assert oo.issue and oo.issue[0].severity == "error"
    return oo


def test_metadata_is_public_and_says_only_what_is_built(app):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        cs = ok(c.get("/fhir/metadata"), CapabilityStatement)
    assert cs.fhirVersion == "4.0.1" and cs.kind == "instance" and cs.format == ["json"]
    served = {r.type: r for r in cs.rest[0].resource}
    assert set(served) == {
        "Patient",
        "Encounter",
        "Coverage",
        "AllergyIntolerance",
        "Condition",
        "DocumentReference",
        "Binary",
        "AuditEvent",
    }
    for name, r in served.items():
        codes = {i.code for i in r.interaction}
        # audit entries never change: AuditEvent keeps no versions (tests/test_fhir_audit.py)
        assert "read" in codes and r.versioning == ("no-version" if name == "AuditEvent" else "versioned")
        history = {"vread", "history-instance"} if name in ("DocumentReference", "Patient") else {"vread"}
        assert codes <= {"read", "search-type"} | (
            history if name in ("DocumentReference", "Binary", "Patient") else set()
        )
        assert r.readHistory is (name in ("DocumentReference", "Binary", "Patient"))
    assert {"vread", "history-instance"} <= {i.code for i in served["Patient"].interaction}
    assert {p.name for p in served["Patient"].searchParam} == {
        "_id",
        "identifier",
        "family",
        "given",
        "name",
        "birthdate",
        "gender",
        "_lastUpdated",
    }
    assert "no OAuth" in cs.rest[0].security.description


def test_patient_read_maps_the_chart(fhir):
    p = ok(fhir.get("/fhir/Patient/100001"), Patient)
    assert p.id == "100001" and p.active is True
    assert p.meta.lastUpdated is not None
    assert p.gender == "female" and str(p.birthDate) == "1984-03-12"
    assert (
        p.name[0].family == "RIVERA" and p.name[0].given == ["ANA", "MARIA"] and p.name[0].use == "official"
    )
    assert [(i.system, i.value) for i in p.identifier] == [("http://hospital.example/id/HOSP", "100001")]
    assert p.identifier[0].type.coding[0].code == "MR"
    assert {(t.system, t.use) for t in p.telecom} == {("phone", "home"), ("phone", "work")}
    assert p.address[0].city == "SPRINGFIELD" and p.address[0].line == ["12 ELM STREET", "APT 4"]
    chen = ok(fhir.get("/fhir/Patient/100002"), Patient)
    assert chen.gender == "male"
    assert ("email", "wei.chen@example.org") in {(t.system, t.value) for t in chen.telecom}


def test_masked_identifiers_are_left_out(fhir):
    """Rivera's NHS number (PID-3, not the MRN) is masked on the chart: FHIR leaves it out."""
    r = fhir.get("/fhir/Patient/100001")
    assert "9434765919" not in r.text and "NHS" not in r.text


def test_identifier_systems_are_configurable(app, fhir):  # noqa: F811
    app.state.fhir_identifier_systems = {"HOSP": "urn:oid:1.2.3.4"}
    p = ok(fhir.get("/fhir/Patient/100001"), Patient)
    assert p.identifier[0].system == "urn:oid:1.2.3.4"
    b = ok(fhir.get("/fhir/Patient", params={"identifier": "urn:oid:1.2.3.4|100001"}), Bundle)
    assert b.total == 1
    b = ok(fhir.get("/fhir/Patient", params={"identifier": "http://other|100001"}), Bundle)
    assert b.total == 0


def test_merged_away_patient_links_to_the_survivor(seeded, fhir):  # noqa: F811
    from interface.mapping.records import Merge
    from tests.test_chart import adt, apply

    apply(seeded.db, adt("A40", "100001", merge=Merge(prior_mrn="100003")))
    gone = ok(fhir.get("/fhir/Patient/100003"), Patient)
    assert gone.active is False
    assert [(ln.type, ln.other.reference) for ln in gone.link] == [("replaced-by", "Patient/100001")]
    survivor = ok(fhir.get("/fhir/Patient/100001"), Patient)
    assert ("replaces", "Patient/100003") in [(ln.type, ln.other.reference) for ln in survivor.link]


def test_patient_search(fhir):
    def ids(**params):
        b = ok(fhir.get("/fhir/Patient", params=params), Bundle)
        assert b.type == "searchset"
        assert b.total == len(b.entry or [])
        for e in b.entry or []:
            assert isinstance(e.resource, Patient) or e.resource.__resource_type__ == "Patient"
        return [e.resource.id for e in b.entry or []]

    assert ids(family="riv") == ["100001"]
    assert ids(given="wei") == ["100002"]
    assert ids(name="ana") == ["100001"] and ids(name="chen") == ["100002"]
    assert ids(birthdate="1957") == ["100002"]
    assert ids(birthdate="eq1957-11-02") == ["100002"]
    assert ids(gender="female", birthdate="1984-03") == ["100001"]
    assert ids(gender="male") == ["100002"]
    assert ids(identifier="100002") == ["100002"]
    assert ids(identifier="http://hospital.example/id/HOSP|100002") == ["100002"]
    assert ids(_id="100001", family="chen") == []
    assert ids(identifier="nope") == []


def test_patient_search_pages_with_total_and_next(fhir):
    b = ok(fhir.get("/fhir/Patient", params={"gender": "female", "_count": 1}), Bundle)
    assert b.total == 2 and len(b.entry) == 1
    links = {ln.relation: ln.url for ln in b.link}
    assert "next" in links and "previous" not in links
    seen = [b.entry[0].resource.id]
    while "next" in links:
        b = ok(fhir.get(links["next"]), Bundle)
        links = {ln.relation: ln.url for ln in b.link}
        seen.append(b.entry[0].resource.id)
    assert sorted(seen) == ["100001", "100003"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?family:exact=RIVERA",
        "?foo=1",
        "?birthdate=zz1980",
        "?_lastUpdated=2026-13",
        "?family=a&_include=Patient:organization",
        "?birthdate=1980-1",
        "?gender=woman",
        "?family=a&family=b",
        "?family=a&_count=x",
        "?family=a&_count=-1",
    ],
)
def test_bad_patient_search_is_400_operation_outcome(fhir, query):
    outcome(fhir.get("/fhir/Patient" + query), 400)


def test_unknown_ids_are_404_operation_outcome(fhir):
    for path in ("/fhir/Patient/NOPE", "/fhir/DocumentReference/NOPE", "/fhir/Binary/NOPE"):
        oo = outcome(fhir.get(path), 404)
        assert oo.issue[0].code == "not-found"


def test_unknown_route_under_fhir_is_operation_outcome(fhir):
    outcome(fhir.get("/fhir/Observation/1"), 404)


def test_auth_401_and_403_are_operation_outcomes(app, tokens):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        for path in (
            "/fhir/Patient/100001",
            "/fhir/DocumentReference?patient=100001",
            "/fhir/Binary/DOC-3001",
        ):
            r = c.get(path, headers={"accept": "text/html"}, follow_redirects=False)
            outcome(r, 401)
            assert r.headers["www-authenticate"] == "Bearer"
            for name in ("ann", "aud"):  # analyst, auditor: not patient data
                outcome(c.get(path, headers={"authorization": f"Bearer {tokens[name]}"}), 403)
            ok_status = c.get(path, headers={"authorization": f"Bearer {tokens['ada']}"}).status_code
            assert ok_status == 200


def test_reads_and_searches_are_audited(seeded, fhir):  # noqa: F811
    fhir.get("/fhir/Patient/100002")
    fhir.get("/fhir/Patient", params={"family": "chen"})
    fhir.get("/fhir/DocumentReference/DOC-3001")
    with seeded.db.connect() as conn:
        rows = conn.execute(select(audit).where(audit.c.user == "carl").order_by(audit.c.id)).all()
    got = [(r.action, r.target_type, r.target_id) for r in rows]
    assert ("view", "patient", "100002") in got
    assert ("search", "patient", None) in got
    assert ("view", "document", "DOC-3001") in got


def test_document_reference_read_and_binary(fhir):
    d = ok(fhir.get("/fhir/DocumentReference/DOC-3001"), DocumentReference)
    assert d.status == "current" and d.subject.reference == "Patient/100001"
    assert d.type.coding[0].system == "http://terminology.hl7.org/CodeSystem/v2-0270"
    assert d.type.coding[0].code == "DS"
    assert d.meta.lastUpdated is not None and d.date is not None
    att = d.content[0].attachment
    assert att.url == "Binary/DOC-3001" and att.contentType == "text/html"
    raw = fhir.get("/fhir/" + att.url, headers={"accept": "*/*"})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/html")
    assert b"Discharge letter" in raw.content
    assert raw.headers["content-security-policy"] == "sandbox"
    assert att.size == len(raw.content)
    r = fhir.get("/fhir/" + att.url)
    b = ok(r, Binary)
    assert b.contentType == "text/html" and b.data == raw.content
    assert base64.b64decode(r.json()["data"]) == raw.content


def test_document_reference_search(fhir):
    def ids(**params):
        b = ok(fhir.get("/fhir/DocumentReference", params=params), Bundle)
        assert b.total == len(b.entry or [])
        return {e.resource.id for e in b.entry or []}

    rivera = ids(patient="100001")
    assert "DOC-3001" in rivera and rivera == ids(subject="Patient/100001")
    assert ids(patient="100001", type="DS") == {"DOC-3001"}
    assert ids(patient="100001", type="http://terminology.hl7.org/CodeSystem/v2-0270|DS") == {"DOC-3001"}
    assert ids(patient="100001", status="current") >= {"DOC-3001"}
    assert "DOC-3001" not in ids(patient="100001", status="entered-in-error")
    assert "DOC-3001" in ids(patient="100001", date="2026-11-21")
    assert "DOC-3001" not in ids(patient="100001", date="2025")
    assert ids(patient="NOPE") == set()
    assert "DOC-3001" in ids(patient="100001", date="ge2026-11-21", _lastUpdated="ge2026")
    assert "DOC-3001" not in ids(patient="100001", date="lt2026")
    for bad in ("status=draft", "type=x|DS", "date=zz2026", "", "author=1"):
        outcome(fhir.get("/fhir/DocumentReference?" + bad), 400)
