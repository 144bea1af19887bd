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

from interface.web.fhir import model as fhir_model
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
def test_every_answer_is_what_the_library_writes(fhir, tokens, path, monkeypatch):  # noqa: F811
    """The server constructs its models without validating them (``interface.web.fhir.model``):
    what it sends is valid R4 and byte for byte what the library writes for the validated
    model, and what a validating build (``INTERFACE_FHIR_VALIDATE=1``) sends."""
    if path.startswith("/fhir/AuditEvent"):
        fhir.headers["authorization"] = f"Bearer {tokens['aud']}"
    r = fhir.get(path)
    assert r.status_code in (200, 400, 404), r.text
    body = r.json()
    model = get_fhir_model_class(body["resourceType"]).model_validate(body)
    assert r.content == model.model_dump_json(exclude_none=True).encode()
    assert serial.dumps(model) == r.content
    monkeypatch.setattr(fhir_model, "VALIDATE", True)
    validated = fhir.get(path)
    assert (validated.status_code, _unstamped(path, validated.json())) == (
        r.status_code,
        _unstamped(path, body),
    )


def _unstamped(path: str, body: dict) -> dict:
    """An answer without what differs between two reads of the same data: an AuditEvent search
    lists the earlier reads' own audit entries."""
    if path.startswith("/fhir/AuditEvent"):
        return {k: v for k, v in body.items() if k not in ("entry", "total")}
    return body


def test_what_a_validated_build_refuses_is_left_out():
    """An empty string, an empty list or an empty element is absent, as the validating
    constructor (which refuses them) would need; a misspelt element is an error, not a blank."""
    made = fhir_model.make(
        Patient,
        id="x",
        name=[{"family": "", "given": ["", None]}, {"family": "DOE"}],
        telecom=[],
        address=[{"city": ""}],
        gender="female",
    )
    assert (
        serial.dumps(made)
        == b'{"resourceType":"Patient","id":"x","name":[{"family":"DOE"}],"gender":"female"}'
    )
    assert (
        serial.dumps(made)
        == Patient(id="x", name=[{"family": "DOE"}], gender="female")
        .model_dump_json(exclude_none=True)
        .encode()
    )
    with pytest.raises(TypeError, match="birthdate"):
        fhir_model.make(Patient, id="x", birthdate="1980")


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
