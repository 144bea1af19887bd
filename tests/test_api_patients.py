"""The patients read API: chart by MRN, search, errors."""

from __future__ import annotations

import warnings

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    # This starlette warns at import that it prefers the httpx2 package; the client works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from interface.mapping.records import Merge, Name, Patient
from interface.store.db import read_only_engine
from interface.web.api.patients import router
from tests.test_chart import adt, apply, ids, vis


@pytest.fixture
def client(engine):
    app = FastAPI()
    app.state.engine = engine
    app.state.reader, private = read_only_engine(engine)  # as web.create_app does
    app.include_router(router)
    with TestClient(app) as c:
        yield c
    if private:
        app.state.reader.dispose()


@pytest.fixture
def charts(engine):
    apply(
        engine,
        adt(
            "A01",
            "M1",
            vis("V1", location="W1"),
            patient=Patient(
                identifiers=ids(("M1", "HOSP", "MR")),
                name=Name(family="Doe", given="Jane"),
                birth_date="1980-01-31",
                sex="F",
            ),
        ),
    )
    apply(
        engine,
        adt(
            "A04",
            "M2",
            vis("V2"),
            patient=Patient(name=Name(family="Doe", given="John"), birth_date="1975-06-01", sex="M"),
        ),
    )
    apply(engine, adt("A04", "M3", vis("V3"), patient=Patient(name=Name(family="Dorian"))))
    apply(engine, adt("A40", "M1", merge=Merge(prior_mrn="M3")))


def test_get_patient_returns_chart(client, charts):
    """GET /api/patients/{mrn} returns the chart record of PRODUCT.md."""
    r = client.get("/api/patients/M1")
    assert r.status_code == 200
    body = r.json()
    assert body["mrn"] == "M1" and body["name"]["family"] == "Doe"
    assert body["birth_date"] == "1980-01-31" and body["merged_into"] is None
    assert {"V1", "V3"} == {v["visit_number"] for v in body["visits"]}
    for key in (
        "identifiers",
        "other_names",
        "sex",
        "addresses",
        "phones",
        "insurance",
        "documents",
        "next_of_kin",
        "allergies",
        "diagnoses",
    ):
        assert key in body


def test_merged_away_mrn_answers_with_survivor(client, charts):
    """A merged-away MRN answers with the survivor's chart and says so."""
    body = client.get("/api/patients/M3").json()
    assert body["mrn"] == "M1" and body["requested_mrn"] == "M3" and body["merged_into"] == "M1"


def test_unknown_mrn_is_404_json(client, engine):
    """An unknown MRN is a 404 with a JSON detail."""
    r = client.get("/api/patients/NOPE")
    assert r.status_code == 404 and r.json()["detail"]


def test_search_by_family_prefix_case_insensitive(client, charts):
    """Search matches name prefixes case-insensitively and leaves out merged-away MRNs."""
    r = client.get("/api/patients", params={"family": "do"})
    assert r.status_code == 200
    assert [p["mrn"] for p in r.json()["patients"]] == ["M1", "M2"]
    r = client.get("/api/patients", params={"family": "DOE", "given": "jo"})
    assert [p["mrn"] for p in r.json()["patients"]] == ["M2"]


def test_search_by_birth_date(client, charts):
    """Search by full or partial birth date."""
    assert [
        p["mrn"] for p in client.get("/api/patients", params={"birth_date": "1975-06-01"}).json()["patients"]
    ] == ["M2"]
    assert [
        p["mrn"] for p in client.get("/api/patients", params={"birth_date": "1980"}).json()["patients"]
    ] == ["M1"]


def test_search_pages(client, charts):
    """limit and offset page through the ordered results."""
    first = client.get("/api/patients", params={"family": "d", "limit": 1}).json()["patients"]
    second = client.get("/api/patients", params={"family": "d", "limit": 1, "offset": 1}).json()["patients"]
    assert [p["mrn"] for p in first + second] == ["M1", "M2"]


@pytest.mark.parametrize(
    "params", [{}, {"family": "  "}, {"birth_date": "31/01/1980"}, {"family": "d", "limit": 0}]
)
def test_search_without_valid_criterion_is_400(client, params):
    """Search with no criterion or a malformed one is refused with a message."""
    r = client.get("/api/patients", params=params)
    assert r.status_code in (400, 422) and r.json()["detail"]
    if params in ({}, {"family": "  "}):
        assert r.status_code == 400
