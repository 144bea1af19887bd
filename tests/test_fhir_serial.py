"""``interface.web.fhir.serial`` writes exactly what the library's own serialiser writes: for
every kind of answer the server gives (each parsed back by its R4 model and dumped again by
fhir.resources) and for the corners the sample data does not reach (primitive extensions,
decimals, base64, comments)."""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from interface.web.fhir import serial
from tests.test_fhir import fhir, tokens  # noqa: F401  (fixtures)
from tests.test_pages import app, seeded  # noqa: F401  (fixtures)

PATHS = [
    "/fhir/metadata",
    "/fhir/Patient/100001",
    "/fhir/Patient/100002/_history",
    "/fhir/Patient?gender=female",
    "/fhir/Encounter?patient=100001&_include=Encounter:patient",
    "/fhir/Coverage?patient=100001",
    "/fhir/AllergyIntolerance?patient=100001",
    "/fhir/Condition?patient=100001",
    "/fhir/DocumentReference/DOC-3001",
    "/fhir/DocumentReference/DOC-3001/_history",
    "/fhir/Binary/DOC-3001",
    "/fhir/AuditEvent?patient=100001",
    "/fhir/Patient/nobody",
    "/fhir/Patient?bogus=1",
]


@pytest.mark.parametrize("path", PATHS)
def test_every_answer_is_what_the_library_writes(fhir, tokens, path):  # noqa: F811
    if path.startswith("/fhir/AuditEvent"):
        fhir.headers["authorization"] = f"Bearer {tokens['aud']}"
    r = fhir.get(path)
    assert r.status_code in (200, 400, 404), r.text
    body = r.json()
    model = get_fhir_model_class(body["resourceType"]).model_validate(body)
    assert r.content == model.model_dump_json(exclude_none=True).encode()
    assert serial.dumps(model) == r.content


def test_the_corners_the_samples_do_not_reach():
    made = [
        Patient(
            id="x",
            birthDate="1980",
            _gender={"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
            _birthDate={"id": "b"},
            meta={"lastUpdated": "2026-12-01T00:00:00.123+02:00"},
            deceasedDateTime="2026-12-01T10:00:00+01:00",
            multipleBirthInteger=2,
            name=[{"given": ["A", None], "_given": [None, {"id": "g"}]}],
        ),
        Observation(status="final", code={"text": "t"}, valueQuantity={"value": "1.50", "unit": "mg"}),
        Observation(status="final", code={"text": "t"}, valueQuantity={"value": 3}),
        Binary(contentType="text/plain", data=b"aGVsbG8="),
        Patient.model_validate({"resourceType": "Patient", "id": "c", "fhir_comments": ["a note"]}),
    ]
    for m in made:
        assert serial.dumps(m) == m.model_dump_json(exclude_none=True).encode(), m
