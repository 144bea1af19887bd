"""Patient versions (``_history``, vread) rebuilt from the chart's field history: the seeded
sample charts over HTTP (every answer validated by the R4 models), and the undoing itself on
made-up records."""

from __future__ import annotations

import json

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.patient import Patient

from interface.web.fhir.patient_history import versions
from tests.test_fhir import fhir, ok, outcome, tokens  # noqa: F401  (fixtures)
from tests.test_pages import app, seeded  # noqa: F401  (fixtures)


def test_a_phone_change_is_a_version_and_read_names_it(fhir):  # noqa: F811
    """Chen's second message changed only his phones: the read's version is that message, the
    history has both versions, the older one with the old phone and no e-mail."""
    r = fhir.get("/fhir/Patient/100002")
    now = ok(r, Patient)
    assert r.headers["etag"] == f'W/"{now.meta.versionId}"'
    h = ok(fhir.get("/fhir/Patient/100002/_history"), Bundle)
    assert h.type == "history" and h.total == len(h.entry) == 2
    newest, oldest = (Patient.model_validate(e.resource.model_dump()) for e in h.entry)
    assert newest.model_dump() == now.model_dump()
    assert int(oldest.meta.versionId) < int(newest.meta.versionId)
    assert h.entry[0].response.etag == f'W/"{now.meta.versionId}"' and h.entry[0].request.method == "PUT"
    assert h.entry[1].request.method == "POST" and h.entry[1].response.status == "201"
    assert [t.value for t in oldest.telecom] == ["1 217 5550777"]
    assert "wei.chen@example.org" in {t.value for t in newest.telecom}
    assert oldest.name[0].family == newest.name[0].family == "CHEN"
    # vread: each version by its id, with its ETag; If-None-Match answers 304
    v = fhir.get(f"/fhir/Patient/100002/_history/{oldest.meta.versionId}")
    assert ok(v, Patient).model_dump() == oldest.model_dump()
    assert v.headers["etag"] == f'W/"{oldest.meta.versionId}"'
    same = fhir.get(f"/fhir/Patient/100002/_history/{newest.meta.versionId}")
    assert ok(same, Patient).model_dump() == now.model_dump()
    cached = {"if-none-match": r.headers["etag"]}
    assert fhir.get(f"/fhir/Patient/100002/_history/{now.meta.versionId}", headers=cached).status_code == 304


def test_versions_unknown_patient_and_version(fhir):  # noqa: F811
    outcome(fhir.get("/fhir/Patient/999999/_history"), 404)
    outcome(fhir.get("/fhir/Patient/100002/_history/999999"), 404)
    h = ok(fhir.get("/fhir/Patient/100003/_history"), Bundle)
    assert h.total == 1 and h.entry[0].request.method == "POST"


def test_history_reads_are_audited(fhir, seeded):  # noqa: F811
    from sqlalchemy import select

    from interface.store.schema import audit

    fhir.get("/fhir/Patient/100002/_history")
    fhir.get("/fhir/Patient/100002/_history/1")
    with seeded.db.connect() as conn:
        rows = conn.execute(select(audit.c.action, audit.c.patient, audit.c.via, audit.c.detail)).all()
    seen = [r for r in rows if r.via == "fhir" and r.patient == "100002"]
    assert {r.detail for r in seen} >= {"/fhir/Patient/100002/_history", "/fhir/Patient/100002/_history/1"}


def _record(**kw):
    base = {
        "patient_id": 1,
        "mrn": "M1",
        "requested_mrn": "M1",
        "merged_from": [],
        "identifiers": [{"value": "M1", "authority": "HOSP", "type": "MR"}],
        "name": {
            "family": "NEW",
            "given": "ANA",
            "middle": None,
            "prefix": None,
            "suffix": None,
            "degree": None,
            "type": "L",
        },
        "other_names": [
            {
                "family": "MAIDEN",
                "given": "ANA",
                "middle": None,
                "prefix": None,
                "suffix": None,
                "degree": None,
                "type": "M",
            }
        ],
        "birth_date": "1980-01-02",
        "sex": "F",
        "ssn": None,
        "death_at": None,
        "deceased": None,
        "addresses": [
            {
                "street": "2 NEW RD",
                "other": None,
                "city": "X",
                "state": None,
                "postal_code": None,
                "country": None,
                "type": "H",
            }
        ],
        "phones": [
            {"number": "2", "use": "PRN", "equipment": "PH", "email": None, "source": "phones"},
            {"number": "9", "use": "WPN", "equipment": "PH", "email": None, "source": "business_phones"},
        ],
        "updated_at": "2026-12-03T00:00:00+00:00",
        "message_id": 30,
    }
    return {**base, **kw}


def _change(mid, table, field, action, old=None, new=None, at="2026-12-01T00:00:00+00:00"):
    text = lambda v: v if v is None or isinstance(v, str) else json.dumps(v)
    return {
        "message_id": mid,
        "at": at,
        "table": table,
        "field": field,
        "action": action,
        "old": text(old),
        "new": text(new),
        "row_id": None,
        "id": 0,
    }


def test_versions_undo_each_kind_of_change_newest_first():
    changes = [  # newest first, as chart_pages.patient_changes gives them
        _change(30, "patients", "family", "set", "OLD", "NEW", at="2026-12-03T00:00:00+00:00"),
        _change(
            30, "patient_names", "other_names", "add", None, {"family": "MAIDEN", "given": "ANA", "type": "M"}
        ),
        _change(
            20,
            "patient_addresses",
            "addresses",
            "replace",
            [{"street": "1 OLD RD", "city": "X", "type": "H"}],
            [{"street": "2 NEW RD", "city": "X", "type": "H"}],
            at="2026-12-02T00:00:00+00:00",
        ),
        _change(
            20,
            "patient_phones",
            "phones",
            "replace",
            [{"number": "1", "use": "PRN", "equipment": "PH"}],
            [{"number": "2", "use": "PRN", "equipment": "PH"}],
            at="2026-12-02T00:00:00+00:00",
        ),
        _change(
            20, "patients", "death_at", "clear", "2026-11-30T00:00:00", None, at="2026-12-02T00:00:00+00:00"
        ),
        _change(
            10,
            "patient_identifiers",
            "identifiers",
            "add",
            None,
            {"value": "M1", "authority": "HOSP", "type": "MR"},
        ),
        _change(10, "patients", None, "initial", None, {"family": "OLD"}),
        _change(10, "patients", "mrn", "create", None, "M1"),
    ]
    found, created = versions(_record(), changes)
    assert created and [v["message_id"] for v in found] == [30, 20, 10]
    v30, v20, v10 = found
    assert v30 == _record()
    assert (
        v20["name"]["family"] == "OLD"
        and v20["other_names"] == []
        and v20["updated_at"].startswith("2026-12-02")
    )
    assert v20["addresses"][0]["street"] == "2 NEW RD" and v20["death_at"] is None
    assert v10["addresses"][0]["street"] == "1 OLD RD" and v10["death_at"] == "2026-11-30T00:00:00"
    assert [p["number"] for p in v10["phones"]] == ["1", "9"]  # the business phone list kept
    assert v10["identifiers"] == [
        {"value": "M1", "authority": "HOSP", "type": "MR"}
    ]  # undone only before v10


def test_versions_stop_at_a_merge_and_without_history():
    merged = [
        _change(30, "patients", "given", "set", "ANNA", "ANA"),
        _change(20, "patients", "merged_into", "merge", None, "M1"),
        _change(10, "patients", "given", "set", "X", "ANNA"),
    ]
    found, created = versions(_record(), merged)
    assert [v["message_id"] for v in found] == [30, 20] and not created
    assert found[1]["name"]["given"] == "ANNA"
    assert versions(_record(), []) == ([_record()], False)
