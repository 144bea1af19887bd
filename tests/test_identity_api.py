"""The identity desk over HTTP: the finding side by side (message masked until revealed), the
candidates, file anyway, file / refile to a chart, send back — roles and reasons enforced."""

from __future__ import annotations

import pytest

from interface.web.app import create_app
from tests.conftest import Clock
from tests.test_identity_desk import mismatch
from tests.test_identity_engine import doc, mdm
from tests.test_web_api import TestClient, fast_hashing, h, tokens  # noqa: F401 (fixtures)


@pytest.fixture
def rig(engine):
    hs, item = mismatch(engine)
    app = create_app(engine, channels=list(hs.channels.values()), clock=Clock(hs.now))
    with TestClient(app) as c:
        yield hs, item, c


def test_the_finding_side_by_side(rig, tokens):
    hs, item, c = rig
    r = c.get(f"/api/errors/{item.id}/identity", headers=h(tokens["clerk"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mrn"] == "M100" and body["status"] == "mismatch"
    assert body["chart"]["family"] == "RIVERA" and body["message"]["family"] == "•••"
    assert {d["field"] for d in body["differences"] if d["verdict"] == "mismatch"} >= {"family", "birth_date"}
    assert c.get(f"/api/errors/{item.id}/identity?reveal=true", headers=h(tokens["clerk"])).status_code == 400
    r = c.get(f"/api/errors/{item.id}/identity?reveal=true&why=checking", headers=h(tokens["clerk"]))
    assert r.json()["message"]["family"] == "CHEN"
    assert c.get(f"/api/errors/{item.id}/identity", headers=h(tokens["auditor"])).status_code == 403


def test_file_anyway_needs_a_reason(rig, tokens):
    hs, item, c = rig
    url = f"/api/errors/{item.id}/file-anyway"
    assert c.post(url, json={"reason": "  "}, headers=h(tokens["clerk"])).status_code == 422
    r = c.post(url, json={"reason": "ward confirmed"}, headers=h(tokens["clerk"]))
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert c.post(url, json={"reason": "again"}, headers=h(tokens["clerk"])).status_code == 409
    hs.drain()
    assert doc(hs, "D1")["mrn"] == "M100"


def test_refile_and_send_back(rig, tokens):
    hs, item, c = rig
    r = c.post(f"/api/errors/{item.id}/refile", json={"mrn": "NOPE"}, headers=h(tokens["clerk"]))
    assert r.status_code == 409 and "no chart" in r.json()["detail"]
    r = c.post(f"/api/errors/{item.id}/refile", json={"mrn": "M200"}, headers=h(tokens["clerk"]))
    assert r.status_code == 200 and r.json()["message_id"] > item.message_id
    hs.drain()
    assert doc(hs, "D1")["mrn"] == "M200"
    hs.send(mdm("D5", "M100", name="DOE^JOHN", dob="19990101", sex="M"), "mdm")
    hs.drain()
    (other,) = hs.items("error")
    r = c.post(f"/api/errors/{other.id}/send-back", json={"reason": "not ours"}, headers=h(tokens["clerk"]))
    assert r.status_code == 200 and r.json()["status"] == "discarded"


def test_candidates_and_file(rig, tokens):
    hs, item, c = rig
    hs.send(mdm("D7", "N1", name="CHEN^WEI", dob="19571102", sex="M"), "mdm")
    hs.drain()
    (held,) = hs.items("held")
    r = c.get(f"/api/errors/{held.id}/candidates", headers=h(tokens["clerk"]))
    assert r.status_code == 200
    best = r.json()[0]
    assert best["mrn"] == "M200" and best["score"] >= 90 and "birth date: same" in best["reasons"]
    assert c.get("/api/errors/999999/candidates", headers=h(tokens["clerk"])).status_code == 404
    r = c.post(f"/api/errors/{held.id}/file", json={"mrn": "M200"}, headers=h(tokens["clerk"]))
    assert r.status_code == 200, r.text
    hs.drain()
    assert doc(hs, "D7")["mrn"] == "M200"
