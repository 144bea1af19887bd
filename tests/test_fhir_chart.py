"""The FHIR face, second slice: Encounter, Coverage, AllergyIntolerance, Condition from the chart;
document history and vread; paging, _lastUpdated, _include, ETag/If-None-Match; SMART-style
scopes on API tokens; the SMART configuration; the audit of every read with its patient. Every
answer is parsed back by the fhir.resources models, each entry of a Bundle by its own type."""

from __future__ import annotations

import warnings

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.allergyintolerance import AllergyIntolerance
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.patient import Patient

from interface.desk import users
from interface.mapping.records import Insurance, Name
from interface.web import auth
from tests.test_fhir import FHIR, fhir, ok, outcome, tokens  # noqa: F401  (fixtures)
from tests.test_pages import APP_NOW, app, seeded  # noqa: F401  (fixtures)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def bundle(r) -> tuple[Bundle, list]:
    """The searchset and its entries' resources, each validated by the model of its type."""
    b = ok(r, Bundle)
    resources = []
    for e in r.json().get("entry") or []:
        model = get_fhir_model_class(e["resource"]["resourceType"])
        resources.append((e["search"]["mode"], model.model_validate(e["resource"])))
    return b, resources


def matches(r) -> list:
    return [x for mode, x in bundle(r)[1] if mode == "match"]


def test_encounter_read_maps_the_visit_and_its_locations(fhir):
    (found,) = matches(fhir.get("/fhir/Encounter", params={"patient": "100001"}))
    e = ok(fhir.get(f"/fhir/Encounter/{found.id}"), Encounter)
    assert e.subject.reference == "Patient/100001"
    assert e.identifier[0].value == "V5001" and e.identifier[0].type.coding[0].code == "VN"
    assert e.status == "in-progress"
    assert (e.class_fhir.system, e.class_fhir.code) == (
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "IMP",
    )
    assert e.period.start is not None
    # ED, then the ward; the A12 cancelled the transfer in between, so it is not there
    assert [(x.location.display, x.status) for x in e.location] == [
        ("ED / BAY3 / 1 / HOSP", "completed"),
        ("W3 / 301 / A / HOSP", "active"),
    ]
    assert e.location[0].period.end == e.location[1].period.start
    assert e.participant[0].type[0].coding[0].code == "ATND"
    assert e.meta.versionId and e.meta.lastUpdated


def test_encounter_search_by_status_date_identifier_and_include(fhir):
    def ids(**params):
        return {x.id for x in matches(fhir.get("/fhir/Encounter", params=params))}

    rivera = ids(patient="100001")
    chen = ids(patient="Patient/100002")
    assert len(rivera) == 1 and len(chen) == 1 and rivera != chen
    assert ids(patient="100001", status="in-progress") == rivera
    assert ids(patient="100001", status="finished") == set()
    assert ids(patient="100001", date="2026-03-09") == rivera
    assert ids(patient="100001", date="ge2026-03") == rivera
    assert ids(patient="100001", date="lt2026-03-01") == set()
    assert ids(identifier="V5001") == rivera
    assert ids(identifier="http://hospital.example/id/HOSP|V5001") == rivera
    assert ids(identifier="http://other|V5001") == set()
    b, resources = bundle(
        fhir.get("/fhir/Encounter", params={"patient": "100001", "_include": "Encounter:patient"})
    )
    assert b.total == 1
    assert [(mode, type(x).__name__, x.id) for mode, x in resources][1] == ("include", "Patient", "100001")
    for bad in ("status=done", "date=soon", "", "patient=1&_include=Encounter:practitioner", "class=IMP"):
        outcome(fhir.get("/fhir/Encounter?" + bad), 400)
    outcome(fhir.get("/fhir/Encounter/999999"), 404)
    outcome(fhir.get("/fhir/Encounter/abc"), 404)


def test_allergy_and_condition_map_al1_and_dg1(fhir):
    (a,) = matches(fhir.get("/fhir/AllergyIntolerance", params={"patient": "100001"}))
    assert isinstance(a, AllergyIntolerance)
    assert a.code.coding[0].code == "PCN" and a.code.text == "Penicillin"
    assert a.category == ["medication"] and a.criticality == "high"
    assert a.reaction[0].severity == "severe" and a.reaction[0].manifestation[0].text == "Hives"
    assert a.clinicalStatus.coding[0].code == "active" and a.patient.reference == "Patient/100001"
    assert ok(fhir.get(f"/fhir/AllergyIntolerance/{a.id}"), AllergyIntolerance).id == a.id

    (c,) = matches(fhir.get("/fhir/Condition", params={"subject": "Patient/100001"}))
    assert isinstance(c, Condition)
    assert (c.code.coding[0].system, c.code.coding[0].code) == ("http://hl7.org/fhir/sid/icd-10", "J18.9")
    assert c.category[0].coding[0].code == "encounter-diagnosis"
    assert c.verificationStatus.coding[0].code == "provisional"  # DG1-6 A (admitting)
    (enc,) = matches(fhir.get("/fhir/Encounter", params={"patient": "100001"}))
    assert c.encounter.reference == f"Encounter/{enc.id}"
    assert ok(fhir.get(f"/fhir/Condition/{c.id}"), Condition).code.text == c.code.text


def test_coverage_maps_in1(seeded, fhir):  # noqa: F811
    from tests.test_chart import adt, apply

    plan = Insurance(
        plan="BCBS",
        company_id="BC1",
        company="Blue Cross",
        group="GRP001",
        group_name="Blue Cross Group",
        effective="2026-01-01",
        expiration="2026-12-31",
        member_id="POL123",
        insured_name=Name(family="RIVERA", given="JUAN"),
        relationship="SPO",
        priority="1",
    )
    apply(seeded.db, adt("A08", "100003", insurance=[plan]), message_id=9001)
    (cov,) = matches(fhir.get("/fhir/Coverage", params={"beneficiary": "Patient/100003"}))
    cov = ok(fhir.get(f"/fhir/Coverage/{cov.id}"), Coverage)
    assert cov.status == "active" and cov.beneficiary.reference == "Patient/100003"
    assert cov.payor[0].display == "Blue Cross" and cov.payor[0].identifier.value == "BC1"
    assert cov.subscriberId == "POL123" and cov.subscriber.display == "JUAN RIVERA"
    assert cov.relationship.coding[0].code == "spouse" and cov.order == 1
    assert str(cov.period.start) == "2026-01-01" and str(cov.period.end) == "2026-12-31"
    assert {(k.type.coding[0].code, k.value) for k in cov.class_fhir} == {
        ("plan", "BCBS"),
        ("group", "GRP001"),
    }
    assert cov.meta.versionId == "9001"
    assert matches(fhir.get("/fhir/Coverage", params={"patient": "100001"})) == []


def test_reads_carry_an_etag_and_if_none_match_is_304(fhir):
    r = fhir.get("/fhir/Patient/100001")
    p = ok(r, Patient)
    assert r.headers["etag"] == f'W/"{p.meta.versionId}"'
    again = fhir.get("/fhir/Patient/100001", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert fhir.get("/fhir/Patient/100001", headers={"if-none-match": 'W/"0"'}).status_code == 200


def test_patient_search_last_updated_prefixes_and_paging_links(fhir):
    def ids(**params):
        return [x.id for x in matches(fhir.get("/fhir/Patient", params=params))]

    everyone = ids(_lastUpdated="ge2026-11-22")
    assert {"100001", "100002"} <= set(everyone)
    assert ids(_lastUpdated="lt2026-11-22") == []
    assert ids(_lastUpdated="2026-11-22") == everyone
    assert ids(_lastUpdated="gt2026-11-22") == []
    assert set(ids(_lastUpdated=["ge2026-11-01", "le2026-11-30"])) == set(everyone)
    assert ids(birthdate="lt1960") == ["100002"] and "100002" not in ids(birthdate="ge1960")
    first = fhir.get("/fhir/Patient", params={"_lastUpdated": "ge2026", "_count": 1})
    b, _ = bundle(first)
    links = {x.relation: x.url for x in b.link}
    assert b.total == len(everyone) and "next" in links and "_lastUpdated=ge2026" in links["self"]
    seen = []
    while True:
        b, resources = bundle(fhir.get(links["next"] if seen else links["self"]))
        seen += [x.id for _, x in resources]
        links = {x.relation: x.url for x in b.link}
        if "next" not in links:
            break
    assert seen == everyone


def test_document_history_and_vread(fhir):
    current = fhir.get("/fhir/DocumentReference/DOC-3001")
    d = ok(current, DocumentReference)
    h = ok(fhir.get("/fhir/DocumentReference/DOC-3001/_history"), Bundle)
    assert h.type == "history" and h.total == len(h.entry) >= 1
    raw = fhir.get("/fhir/DocumentReference/DOC-3001/_history").json()["entry"]
    versions = [DocumentReference.model_validate(e["resource"]) for e in raw]
    assert versions[0].meta.versionId == d.meta.versionId  # newest first
    assert raw[-1]["request"]["method"] == "POST"
    for v in versions:
        one = fhir.get(f"/fhir/DocumentReference/DOC-3001/_history/{v.meta.versionId}")
        assert ok(one, DocumentReference).meta.versionId == v.meta.versionId
        assert one.headers["etag"] == f'W/"{v.meta.versionId}"'
    oldest = versions[-1]
    if len(versions) > 1:
        url = oldest.content[0].attachment.url
        assert url == f"Binary/DOC-3001/_history/{oldest.meta.versionId}"
        assert fhir.get("/fhir/" + url, headers={"accept": "*/*"}).status_code == 200
    outcome(fhir.get("/fhir/DocumentReference/DOC-3001/_history/1"), 404)
    outcome(fhir.get("/fhir/DocumentReference/NOPE/_history"), 404)
    b, resources = bundle(
        fhir.get(
            "/fhir/DocumentReference", params={"patient": "100001", "_include": "DocumentReference:patient"}
        )
    )
    assert ("include", "100001") in [(m, x.id) for m, x in resources if isinstance(x, Patient)]


# -- scopes ---------------------------------------------------------------------------------------


def _token(seeded, name, scopes=None, patient=None):  # noqa: F811
    with seeded.db.begin() as conn:
        return users.new_token(conn, name, now=APP_NOW, scopes=scopes, patient=patient)


def test_a_token_without_a_fhir_scope_is_refused(seeded, app):  # noqa: F811
    plain = _token(seeded, "carl")
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["authorization"] = f"Bearer {plain}"
        oo = outcome(c.get("/fhir/Patient/100001"), 403)
        assert "no FHIR scope" in oo.issue[0].diagnostics
        assert c.get("/api/patients/100001").status_code == 200  # the API is unchanged
        assert c.get("/fhir/metadata").status_code == 200


def test_resource_scopes_and_patient_binding(seeded, app):  # noqa: F811
    only_encounters = _token(seeded, "carl", "user/Encounter.read")
    one_patient = _token(seeded, "carl", "patient/*.read", patient="100001")
    patient_only = _token(seeded, "carl", ["patient/Patient.read"], patient="100001")
    analyst = _token(seeded, "ann", "user/*.read")
    with TestClient(app, base_url="http://testserver") as c:

        def get(token, path, **params):
            return c.get(path, params=params, headers={"authorization": f"Bearer {token}", "accept": FHIR})

        assert get(only_encounters, "/fhir/Encounter", patient="100002").status_code == 200
        outcome(get(only_encounters, "/fhir/Patient/100002"), 403)
        outcome(get(analyst, "/fhir/Patient/100001"), 403)  # a scope never widens the role

        ok(get(one_patient, "/fhir/Patient/100001"), Patient)
        outcome(get(one_patient, "/fhir/Patient/100002"), 403)
        assert [x.id for x in matches(get(one_patient, "/fhir/Patient", gender="female"))] == ["100001"]
        assert matches(get(one_patient, "/fhir/Encounter", patient="100002")) == []
        assert {
            x.subject.reference for x in matches(get(one_patient, "/fhir/Encounter", status="in-progress"))
        } == {"Patient/100001"}
        docs = matches(get(one_patient, "/fhir/DocumentReference", type="DS"))
        assert docs and {x.subject.reference for x in docs} == {"Patient/100001"}
        ok(get(patient_only, "/fhir/Patient/100001"), Patient)
        outcome(get(patient_only, "/fhir/Encounter", patient="100001"), 403)
        outcome(get(patient_only, "/fhir/Binary/DOC-3001"), 403)


def test_scopes_are_checked_when_the_token_is_made(seeded):  # noqa: F811
    for scopes, patient in (
        ("patient/*.read", None),  # no launch: the patient must be bound
        ("user/*.write", None),
        ("user/Observation.read", None),
        ("openid", None),
        ("user/*.read", "100001"),  # a patient binding without a patient scope
    ):
        with pytest.raises(users.UserError):
            _token(seeded, "carl", scopes, patient)


def test_cli_makes_and_lists_a_scoped_token(seeded, capsys):  # noqa: F811
    assert users.cli_main(["token", "carl", "--scope", "user/*.read", "--scope", "patient/Patient.read", "--patient", "100001"], seeded.db) == 0  # fmt: skip
    token = capsys.readouterr().out.strip()
    with seeded.db.connect() as conn:
        user = users.user_for_token(conn, token, APP_NOW)
    assert user.scopes == ("user/*.read", "patient/Patient.read") and user.patient == "100001"
    assert users.cli_main(["tokens", "carl"], seeded.db) == 0
    assert "user/*.read patient/Patient.read" in capsys.readouterr().out
    assert users.cli_main(["token", "carl", "--scope", "patient/*.read"], seeded.db) == 1


def test_smart_configuration_says_there_is_no_oauth_server(app):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
            conf = c.get(path).json()
            assert "user/*.read" in conf["scopes_supported"] and "patient/*.read" in conf["scopes_supported"]
            assert conf["grant_types_supported"] == [] and "authorization_endpoint" not in conf
            assert "No OAuth" in conf["description"]


def test_every_read_is_audited_with_its_patient(fhir, monkeypatch):
    """Reads: one ``view`` per patient shown; searches: one ``search`` row with the query, then a
    ``listed`` row per patient in the Bundle (docs/audit.md); all ``via`` fhir."""
    from interface.store import audit as store_audit

    calls = []
    real = store_audit.record_many

    def spy(conn, entries, **kw):
        entries = list(entries)
        calls.extend((e["action"], e["target_type"], e.get("patient")) for e in entries)
        assert {e["via"] for e in entries} == {"fhir"}
        return real(conn, entries, **kw)

    monkeypatch.setattr(store_audit, "record_many", spy)
    fhir.get("/fhir/Patient/100002")
    fhir.get("/fhir/Patient", params={"gender": "female"})
    (enc,) = matches(fhir.get("/fhir/Encounter", params={"patient": "100001"}))
    fhir.get(f"/fhir/Encounter/{enc.id}")
    fhir.get("/fhir/AllergyIntolerance", params={"patient": "100001"})
    fhir.get("/fhir/DocumentReference/DOC-3001/_history")
    fhir.get("/fhir/Binary/DOC-3001")
    fhir.get("/fhir/Patient", params={"family": "nobody"})
    assert ("view", "patient", "100002") in calls
    assert ("listed", "patient", "100001") in calls and ("listed", "patient", "100003") in calls
    assert ("listed", "encounter", "100001") in calls and ("view", "encounter", "100001") in calls
    assert ("listed", "allergy", "100001") in calls
    assert calls.count(("view", "document", "100001")) == 2
    assert calls.count(("search", "patient", None)) == 2  # each search's query row, no patient
    assert calls[-1] == ("search", "patient", None)  # found nobody: the query row alone
