"""A stock FHIR client nobody here wrote — the SMART on FHIR Python client (``fhirclient``, R4
4.0.1 models of its own) — reads and searches the server over real HTTP on loopback, with an API
token: its models parse the CapabilityStatement, Patients, a searchset and DocumentReferences,
so what the server sends is R4 by a second, independent reading of the specification."""

from __future__ import annotations

import pytest
from fhirclient import client
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.documentreference import DocumentReference
from fhirclient.models.patient import Patient

from interface.web.app import WebThread
from tests.test_fhir import tokens  # noqa: F401  (fixture)
from tests.test_pages import app, seeded  # noqa: F401  (fixtures)


@pytest.fixture
def base(app):  # noqa: F811
    web = WebThread(app, "127.0.0.1", 0)
    web.start()
    try:
        yield f"http://127.0.0.1:{web.port}/fhir"
    finally:
        web.stop()


def _client(base: str, token: str) -> client.FHIRClient:
    smart = client.FHIRClient(settings={"app_id": "interface-tests", "api_base": base})
    smart.server.session.headers["Authorization"] = f"Bearer {token}"
    return smart


def test_the_smart_client_reads_and_searches_the_sample_charts(base, tokens):  # noqa: F811
    smart = _client(base, tokens["carl"])
    smart.prepare()  # GET /metadata, parsed by the client's own CapabilityStatement model
    caps = smart.server.capabilityStatement
    assert isinstance(caps, CapabilityStatement) and caps.fhirVersion == "4.0.1"
    served = {r.type for r in caps.rest[0].resource}
    assert {"Patient", "DocumentReference", "Binary"} <= served

    p = Patient.read("100001", smart.server)
    assert p.name[0].family == "RIVERA" and p.birthDate.isostring == "1984-03-12"
    assert p.gender == "female"
    assert any(i.value == "100001" for i in p.identifier)

    found = list(Patient.where(struct={"family": "rivera"}).perform_resources_iter(smart.server))
    assert [x.id for x in found] == ["100001"]
    assert (
        list(Patient.where(struct={"family": "nobody-by-this-name"}).perform_resources_iter(smart.server))
        == []
    )

    docs = list(DocumentReference.where(struct={"patient": "100001"}).perform_resources_iter(smart.server))
    assert docs and all(d.subject.reference == "Patient/100001" for d in docs)
    attachment = docs[0].content[0].attachment
    assert attachment.url.startswith("Binary/")


def test_the_smart_client_is_refused_without_a_clerk_token(base, tokens):  # noqa: F811
    """An analyst's token reads no patient: the client raises on the 403 the server answers."""
    smart = _client(base, tokens["ann"])
    with pytest.raises(Exception) as info:
        Patient.read("100001", smart.server)
    assert "403" in str(info.value) or getattr(getattr(info.value, "response", None), "status_code", 0) == 403
