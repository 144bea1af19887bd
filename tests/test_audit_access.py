"""The patient-centric access report: every read path records the patient's MRN, the user and the
way in (console, api, fhir, cli); searches one entry per patient listed; auditors read the trail
by patient (merges resolved) or user and period, as a page, JSON or CSV; clerks may not."""

from __future__ import annotations

import csv
import io
import warnings

import pytest
from sqlalchemy import select

from interface.desk import users
from interface.mapping.records import Merge
from interface.ops import cli
from interface.store import audit as store_audit
from interface.store.schema import audit
from tests.test_chart import adt, apply
from tests.test_pages import APP_NOW, admin, app, seeded, use_session  # noqa: F401

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def entries(db, **where) -> list:
    q = select(audit).order_by(audit.c.id)
    for k, v in where.items():
        q = q.where(audit.c[k] == v)
    with db.connect() as conn:
        return conn.execute(q).all()


def newest(db, n=1) -> list:
    with db.connect() as conn:
        return list(reversed(conn.execute(select(audit).order_by(audit.c.id.desc()).limit(n)).all()))


@pytest.fixture
def clerk(app):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["accept"] = "text/html"
        c.csrf = use_session(c, "carl")
        yield c


@pytest.fixture
def auditor(app):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["accept"] = "text/html"
        use_session(c, "aud")
        yield c


@pytest.fixture
def token(seeded):  # noqa: F811
    with seeded.db.begin() as conn:
        return users.new_token(conn, "carl", now=APP_NOW, scopes="user/*.read")  # /fhir needs a scope


@pytest.fixture
def api(app, token):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["authorization"] = f"Bearer {token}"
        yield c


def test_console_reads_record_the_patient(clerk, seeded):  # noqa: F811
    """Chart, document, document content, message and error item pages each record the
    patient's MRN, the clerk and ``via`` console."""
    db = seeded.db
    for path, mrn in (
        ("/patients/100001", "100001"),
        ("/documents/DOC-3001", "100001"),
        ("/documents/DOC-3001/content", "100001"),
        (f"/messages/{seeded.messages['bad']}", "100001"),
        (f"/errors/{seeded.items['retry']}", "100002"),
    ):
        assert clerk.get(path).status_code == 200, path
        e = newest(db)[0]
        assert (e.user, e.via, e.patient) == ("carl", "console", mrn), path
        assert e.action in ("view", "view_content") and e.seq is not None and e.entry_hash


def test_patient_search_records_each_patient_listed(clerk, seeded):  # noqa: F811
    """A search writes one entry per patient on the page shown, with the criteria."""
    before = len(entries(seeded.db))
    page = clerk.get("/patients", params={"family": "r"}).text
    rows = entries(seeded.db)[before:]
    assert "100001" in page
    assert {r.patient for r in rows} == {"100001"} and {r.action for r in rows} == {"search"}
    assert '"family": "r"' in rows[0].detail and rows[0].via == "console"


def test_message_search_by_mrn_is_kept_unmasked_against_the_patient(clerk, seeded):  # noqa: F811
    """Searching messages by MRN is recorded against that MRN (no longer only masked)."""
    clerk.get("/messages", params={"mrn": "100002"})
    assert {e.patient for e in newest(seeded.db, 1)} == {"100002"}


def test_api_reads_record_the_patient(api, seeded):  # noqa: F811
    """REST API chart, search and document reads record the MRN and ``via`` api."""
    db = seeded.db
    assert api.get("/api/patients/100002").status_code == 200
    assert (newest(db)[0].patient, newest(db)[0].via, newest(db)[0].user) == ("100002", "api", "carl")
    before = len(entries(db))
    found = api.get("/api/patients", params={"family": "c"}).json()["patients"]
    rows = entries(db)[before:]
    assert [r.action for r in rows][0] == "search"
    assert {r.patient for r in rows if r.action == "listed"} == {p["mrn"] for p in found} != set()
    assert api.get("/api/documents/DOC-3001").status_code == 200
    assert (newest(db)[0].target_id, newest(db)[0].patient) == ("DOC-3001", "100001")
    before = len(entries(db))
    assert api.get("/api/documents", params={"mrn": "100001"}).status_code == 200
    rows = entries(db)[before:]
    assert rows[0].action == "search" and rows[0].patient == "100001"
    assert {r.patient for r in rows[1:]} == {"100001"} and {r.via for r in rows} == {"api"}


def test_fhir_reads_record_the_patient(api, seeded):  # noqa: F811
    """FHIR Patient read and search record the MRN and ``via`` fhir."""
    db = seeded.db
    assert api.get("/fhir/Patient/100001").status_code == 200
    e = newest(db)[0]
    assert (e.patient, e.via, e.action) == ("100001", "fhir", "view")
    before = len(entries(db))
    bundle = api.get("/fhir/Patient", params={"family": "chen"}).json()
    listed = [r for r in entries(db)[before:] if r.action == "listed"]
    assert [x["resource"]["id"] for x in bundle["entry"]] == [r.patient for r in listed] == ["100002"]
    assert {r.via for r in listed} == {"fhir"}
    assert api.get("/fhir/DocumentReference/DOC-3001").status_code == 200
    assert (newest(db)[0].patient, newest(db)[0].via) == ("100001", "fhir")


def test_a_change_through_the_api_carries_via_and_patient(api, seeded):  # noqa: F811
    """A clerk action written by the desk (not the web layer) is marked with the request's way in."""
    r = api.post(f"/api/errors/{seeded.items['retry']}/retry")
    assert r.status_code == 200, r.text
    e = entries(seeded.db, action="retry")[-1]
    assert (e.via, e.patient, e.user) == ("api", "100002", "carl")


def test_cli_reads_are_audited_as_the_os_user(seeded, db_url, capsys):  # noqa: F811
    """`interface errors show` and `errors list` record the OS user, ``via`` cli, the MRN."""
    assert cli.main(["errors", "show", str(seeded.items["retry"]), "--db", db_url]) == 0
    e = newest(seeded.db)[0]
    assert (e.user, e.via, e.patient, e.action) == (store_audit.os_user(), "cli", "100002", "view")
    before = len(entries(seeded.db))
    assert cli.main(["errors", "list", "--db", db_url]) == 0
    rows = entries(seeded.db)[before:]
    assert {r.patient for r in rows} == {"100001", "100002", "100003"} and {r.via for r in rows} == {"cli"}
    capsys.readouterr()
    assert cli.main(["audit", "report", "--mrn", "100002", "--csv", "--db", db_url]) == 0
    lines = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert any(r["via"] == "cli" and r["action"] == "view" for r in lines)
    assert newest(seeded.db)[0].action == "access_report"


def test_access_report_from_the_chart_with_merges(app, clerk, auditor, seeded):  # noqa: F811
    """The clerk's view shows on "Who looked at this patient"; entries written under an MRN
    later merged into the chart are included; clerks may not open the report; admins reach it
    from the chart, auditors from the audit log."""
    clerk.get("/patients/100003")
    apply(seeded.db, adt("A40", "100002", merge=Merge(prior_mrn="100003")))
    assert clerk.get("/patients/100002/access").status_code == 403
    assert 'id="access-report-link"' not in clerk.get("/patients/100002").text
    page = auditor.get("/patients/100002/access")
    assert page.status_code == 200 and 'id="patient-banner"' in page.text and "CHEN" in page.text
    table = page.text.split('id="access-report"', 1)[1]
    assert "carl" in table and "100003" in table
    log = auditor.get("/audit", params={"patient": "100002"}).text
    assert 'href="/patients/100002/access"' in log
    with TestClient(app, base_url="http://testserver") as adm:
        adm.headers["accept"] = "text/html"
        use_session(adm, "ada")
        assert 'href="/patients/100002/access"' in adm.get("/patients/100002").text
    looked = entries(seeded.db, action="access_report")
    assert {e.user for e in looked} == {"aud"} and {e.patient for e in looked} == {"100002"}


def test_audit_api_by_patient_and_csv(app, seeded):  # noqa: F811
    """/api/audit?patient= resolves merges; /api/audit.csv exports; verify answers ok; clerks 403."""
    apply(seeded.db, adt("A40", "100002", merge=Merge(prior_mrn="100003")))
    with seeded.db.begin() as conn:
        store_audit.record(conn, user="x", action="view", patient="100003", now=APP_NOW, via="api")
        aud = users.new_token(conn, "aud", now=APP_NOW)
        clerk = users.new_token(conn, "carl", now=APP_NOW)
    with TestClient(app) as c:
        h = {"authorization": f"Bearer {aud}"}
        page = c.get("/api/audit", params={"patient": "100002"}, headers=h).json()
        assert set(page["patient_mrns"]) == {"100002", "100003"}
        assert any(e["patient"] == "100003" and e["user"] == "x" for e in page["entries"])
        r = c.get("/api/audit.csv", params={"patient": "100002", "via": "api"}, headers=h)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert rows and {x["via"] for x in rows} == {"api"}
        assert c.get("/api/audit/verify", headers=h).json()["ok"] is True
        assert c.get("/api/audit", headers={"authorization": f"Bearer {clerk}"}).status_code == 403


def test_console_csv_export(auditor, clerk, seeded):  # noqa: F811
    """The audit log's CSV link exports the filtered entries."""
    clerk.get("/patients/100001")
    r = auditor.get("/audit.csv", params={"patient": "100001"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert any(x["user"] == "carl" and x["action"] == "view" for x in rows)
    r = auditor.get("/patients/100001/access.csv")
    assert r.status_code == 200 and "carl" in r.text
