"""The release-of-information desk end to end on the real store (SQLite and PostgreSQL): requests
from receipt (due date, basis, events with who and when), the identity checklist, status moves and
what blocks them, the one extension, denial with the right to review, authorizations (a missing
element, expiry and revocation block the release, the signed form kept by SHA-256), the documents a
release would send and what it leaves out (scope, cancelled, sensitive unless named), the
disclosure log, entered disclosures and the accounting (exclusions, six years, itself logged); the
REST API (roles, audit) and ``interface roi``."""

from __future__ import annotations

import base64
import io
import json
import warnings
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from interface.desk import roi, roi_release, users
from interface.desk.roi import RoiError
from interface.rules.roi import RoiSettings
from interface.store import content
from interface.store.roi_schema import roi_disclosures
from interface.store.schema import audit
from interface.web.app import create_app
from tests.test_adt_events import ROOT, Harness, adt
from tests.test_deficiencies_cli import mdm

NOW = datetime(2026, 12, 10, 15, 0, tzinfo=timezone.utc)
TODAY = NOW.date()
S = RoiSettings()
PASSWORD = "correct horse battery staple"
SAMPLES = ROOT / "sample_messages"
FORM = (SAMPLES / "roi" / "signed-authorization.pdf").read_bytes()
COMPLETE = {
    "description": "Discharge summaries and consultation notes, November 2026",
    "discloser": "General Hospital, Health Information Management",
    "recipient": "Smith & Partners LLP",
    "purpose": "Personal injury claim",
    "expires_on": "2027-06-30",
    "signed_by": "Ana Rivera",
    "signed_on": "2026-12-01",
    "revocation_statement": True,
    "conditioning_statement": True,
    "redisclosure_statement": True,
}


@pytest.fixture
def h(engine) -> Harness:
    h = Harness(engine)
    h.now = NOW - timedelta(days=20)
    h.send((SAMPLES / "adt" / "04-a04-register-rivera.hl7").read_bytes())
    h.send(adt("A28", "200002", name="OKAFOR^EMEKA", dob="19700101", sex="M"))
    h.drain()
    for f in ("mdm_t01_original.hl7", "mdm_t02_original_pdf.hl7"):
        h.send((SAMPLES / "mdm" / f).read_bytes(), "mdm")
    h.send(mdm("T02", "NOTE-1", mrn="100001", type_="PN"), "mdm")  # a progress note (text)
    h.send(mdm("T02", "PSY-1", mrn="100001", type_="PSYTX"), "mdm")  # a psychotherapy note
    h.send(mdm("T02", "OLD-1", mrn="100001", type_="DS").replace("20261120090000", "20250105090000"), "mdm")
    h.drain()
    assert h.items("error") == []
    h.now = NOW
    return h


def store_of() -> content.ContentStore:
    return content.ContentStore(None)


def new(h, **kw) -> int:
    values = dict(
        mrn="100001",
        requester_type="patient",
        requester_name="Ana Rivera",
        requester_email="ana@example.org",
        scope={"designated_record_set": True},
        purpose="personal",
        delivery="secure_download",
        received_on="2026-12-01",
    )
    values.update(kw)
    with h.db.begin() as conn:
        return roi.new_request(conn, S, **values, user="clerk1", now=NOW)


def view(h, rid: int) -> dict:
    with h.db.connect() as conn:
        return roi.view(conn, S, rid, TODAY)


def do(h, fn, *args, **kw):
    with h.db.begin() as conn:
        return fn(conn, *args, **kw, now=NOW)


def ready(h, rid: int, checks=("photo_id", "birth_date")) -> None:
    do(h, roi.verify_identity, S, rid, {c: True for c in checks}, user="rel1")
    do(h, roi.set_status, S, rid, "in_progress", user="rel1")
    do(h, roi.set_status, S, rid, "ready", user="rel1")


# -- requests ----------------------------------------------------------------------------------


def test_a_request_gets_its_due_date_basis_and_first_event(h):
    rid = new(h)
    v = view(h, rid)
    assert v["status"] == "received" and v["due_on"] == date(2026, 12, 31)
    assert v["basis"] == "individual_access" and v["age_days"] == 9 and v["days_left"] == 21
    assert not v["overdue"] and v["fee_estimate"]["lines"] == ["Electronic copy, flat fee: $6.50"]
    assert v["patient"]["family"] == "RIVERA" and v["scope_text"] == "The designated record set"
    assert [(e["action"], e["to_status"], e["user"]) for e in v["events"]] == [
        ("received", "received", "clerk1")
    ]
    old = new(h, received_on="2026-11-01")
    queue = [r["id"] for r in do_read(h, roi.queue, S, TODAY)]
    assert queue == [old, rid] and view(h, old)["overdue"]


def do_read(h, fn, *args, **kw):
    with h.db.connect() as conn:
        return fn(conn, *args, **kw)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"mrn": "NOPE"}, "no patient"),
        ({"requester_type": "alien"}, "requester type must be one of"),
        ({"delivery": "email", "requester_email": None}, "needs the requester's e-mail"),
        ({"delivery": "mail"}, "needs the requester's address"),
        ({"scope": {}}, "say what is asked"),
        ({"scope": {"from": "2026-05-01", "to": "2026-04-01"}}, "ends before it starts"),
        ({"received_on": "2026-12-11"}, "in the future"),
    ],
)
def test_a_request_that_cannot_be_logged_says_why(h, change, message):
    with pytest.raises(RoiError, match=message):
        new(h, **change)


def test_identity_gates_the_work_and_every_move_is_recorded(h):
    rid = new(h)
    with pytest.raises(RoiError, match="cannot become in progress"):
        do(h, roi.set_status, S, rid, "in_progress", user="rel1")
    missing = do(h, roi.verify_identity, S, rid, {"photo_id": True}, user="clerk1")
    assert missing == ["Birth date matches the chart"] and view(h, rid)["status"] == "verifying"
    with pytest.raises(RoiError, match="Birth date matches the chart"):
        do(h, roi.set_status, S, rid, "in_progress", user="rel1")
    assert do(h, roi.verify_identity, S, rid, {"photo_id": True, "birth_date": True}, user="clerk1") == []
    do(h, roi.set_status, S, rid, "in_progress", user="rel1")
    with pytest.raises(RoiError, match="cannot become"):
        do(h, roi.set_status, S, rid, "received", user="rel1")
    with pytest.raises(RoiError, match="by releasing it"):
        do(h, roi.set_status, S, rid, "released", user="rel1")
    with pytest.raises(RoiError, match="why the request is withdrawn"):
        do(h, roi.set_status, S, rid, "withdrawn", user="rel1")
    do(h, roi.set_status, S, rid, "withdrawn", user="rel1", note="the patient came in person")
    v = view(h, rid)
    assert [(e["action"], e["from_status"], e["to_status"], e["user"]) for e in v["events"]] == [
        ("received", None, "received", "clerk1"),
        ("verify", "received", "verifying", "clerk1"),
        ("verify", None, None, "clerk1"),
        ("status", "verifying", "in_progress", "rel1"),
        ("status", "in_progress", "withdrawn", "rel1"),
    ]
    assert v["identity_verified_by"] == "clerk1" and v["days_left"] is None


def test_one_extension_with_its_reason(h):
    rid = new(h)
    assert do(h, roi.extend, S, rid, "records in off-site storage", user="rel1") == date(2027, 1, 30)
    with pytest.raises(RoiError, match="already extended 1 time"):
        do(h, roi.extend, S, rid, "again", user="rel1")
    v = view(h, rid)
    assert v["extensions"] == 1 and v["extension_reason"] == "records in off-site storage"
    assert v["events"][-1]["note"] == "due 2027-01-30: records in off-site storage"


def test_a_denial_tells_the_patient_of_the_right_to_review(h):
    rid = new(h)
    do(h, roi.deny, rid, "Information compiled for a legal proceeding", user="rel1")
    v = view(h, rid)
    assert v["status"] == "denied" and "reviewed by a licensed health care professional" in v["review_right"]
    other = new(h, requester_type="attorney", purpose="legal", requester_name="Smith & Partners")
    do(h, roi.deny, other, "No valid authorization", user="rel1")
    assert view(h, other)["review_right"] is None
    with pytest.raises(RoiError, match="the request is denied"):
        do(h, roi.deny, rid, "again", user="rel1")


# -- authorizations ----------------------------------------------------------------------------


def attorney(h) -> int:
    return new(
        h,
        requester_type="attorney",
        requester_name="Smith & Partners LLP",
        requester_address="1 Court Street\nSpringfield IL 62701",
        purpose="legal",
        delivery="mail",
        scope={"from": "2026-11-01", "to": "2026-11-30"},
    )


def test_an_attorney_needs_a_complete_authorization_and_the_missing_element_is_named(h):
    rid = attorney(h)
    ready(h, rid, checks=("organization",))
    v = view(h, rid)
    assert v["basis"] == "authorization"
    assert [p["element"] for p in v["release_problems"]] == ["authorization"]
    auth = do(
        h,
        roi.authorize,
        S,
        rid,
        {**COMPLETE, "conditioning_statement": False},
        user="rel1",
        store_=store_of(),
    )
    assert [p["element"] for p in auth["problems"]] == ["conditioning_statement", "signed_form"]
    with pytest.raises(RoiError, match="Missing element: The statement that treatment is not conditioned"):
        do(h, roi_release.release, S, rid, user="rel1", store_=store_of())
    auth = do(
        h, roi.authorize, S, rid, COMPLETE, user="rel1", store_=store_of(), form=FORM, form_name="auth.pdf"
    )
    assert auth["problems"] == [] and auth["form_sha256"] == content.sha256_hex(FORM)
    with h.db.connect() as conn:
        assert store_of().get(conn, auth["form_sha256"]) == FORM
    assert view(h, rid)["release_problems"] == []
    # a corrected checklist keeps the form already on file
    again = do(
        h, roi.authorize, S, rid, {**COMPLETE, "expires_on": "2026-12-09"}, user="rel1", store_=store_of()
    )
    assert again["form_sha256"] == auth["form_sha256"]
    assert again["problems"] == [{"element": "expiration", "text": "Expired on 2026-12-09"}]
    do(h, roi.authorize, S, rid, COMPLETE, user="rel1", store_=store_of())
    do(h, roi.revoke, rid, "2026-12-09", "letter from the patient", user="rel1")
    assert view(h, rid)["release_problems"] == [{"element": "revocation", "text": "Revoked on 2026-12-09"}]


def test_the_form_must_be_a_pdf_or_an_image(h):
    rid = attorney(h)
    with pytest.raises(RoiError, match="PDF or an image"):
        do(h, roi.authorize, S, rid, COMPLETE, user="rel1", store_=store_of(), form=b"MZ\x90\x00")


def test_candidates_follow_the_scope_and_leave_out_sensitive_and_cancelled(h):
    rid = attorney(h)
    with h.db.connect() as conn:
        cands = {c["document_number"]: c for c in roi_release.candidates(conn, roi.get(conn, rid))}
    assert cands["DOC-1002"]["selected"] and cands["NOTE-1"]["selected"]
    assert cands["DOC-1001"]["excluded"] == ["No stored content (not received yet, or a reference only)"]
    assert not cands["OLD-1"]["selected"] and "before 2026-11-01" in cands["OLD-1"]["excluded"][0]
    psy = cands["PSY-1"]
    assert psy["categories"] == ["psychotherapy_notes"] and psy["sensitive"] and not psy["selected"]
    assert "164.508(a)(2)" in psy["excluded"][0]
    do(
        h,
        roi.authorize,
        S,
        rid,
        COMPLETE,
        user="rel1",
        store_=store_of(),
        form=FORM,
        categories=["psychotherapy_notes"],
    )
    with h.db.connect() as conn:
        cands = {c["document_number"]: c for c in roi_release.candidates(conn, roi.get(conn, rid))}
    assert cands["PSY-1"]["selected"] and not cands["PSY-1"]["sensitive"]


# -- the disclosure log and accounting -------------------------------------------------------------


def manual(h, day: str, basis: str, **kw) -> int:
    values = dict(
        mrn="100001",
        disclosed_on=day,
        recipient_name="County Health Department",
        recipient_type="public_health",
        recipient_address="5 Main St, Springfield",
        purpose="Communicable disease report",
        basis=basis,
        description="Laboratory result of 2026-03-02",
    )
    values.update(kw)
    return do(h, roi.log_disclosure, **values, user="rel1")


def test_accounting_lists_what_must_be_accounted_for_for_up_to_six_years(h):
    manual(h, "2026-03-03", "public_health")
    manual(h, "2026-04-01", "treatment", recipient_type="provider", recipient_name="Dr. Who")
    manual(h, "2026-05-01", "court_order", recipient_type="court_order", recipient_name="Circuit Court")
    manual(h, "2019-05-01", "court_order", recipient_type="court_order", recipient_name="Old Court")
    result = do(h, roi.accounting, S, "100001", start=None, end=None, today=TODAY, user="rel1")
    assert result["from"] == "2020-12-10" and result["to"] == "2026-12-10"
    assert [d["recipient_name"] for d in result["disclosures"]] == [
        "County Health Department",
        "Circuit Court",
    ]
    assert result["excluded"] == 1 and result["disclosures"][0]["basis_label"].startswith("Public health")
    with h.db.connect() as conn:
        logged = conn.execute(select(roi_disclosures).where(roi_disclosures.c.source == "accounting")).all()
    assert len(logged) == 1 and logged[0].basis == "individual_access"
    again = do(h, roi.accounting, S, "100001", start="2026-01-01", end="2026-12-10", today=TODAY, user="rel1")
    assert len(again["disclosures"]) == 2  # the accounting itself is not accounted for
    with pytest.raises(RoiError, match="at most 6 years"):
        do(h, roi.accounting, S, "100001", start="2019-01-01", end=None, today=TODAY, user="rel1")
    with pytest.raises(RoiError, match="not in the future"):
        manual(h, "2026-12-11", "public_health")


# -- the API -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


def token(db, name: str, role: str) -> str:
    with db.begin() as conn:
        users.add_user(conn, name, role, PASSWORD, now=NOW)
        return users.new_token(conn, name, now=NOW)


@pytest.fixture
def client(h):
    app = create_app(h.db, channels=list(h.channels.values()), clock=lambda: NOW)
    with TestClient(app) as c:
        c.tokens = {r: token(h.db, r + "1", r) for r in ("clerk", "release", "analyst", "admin")}
        yield c


def bearer(c, role: str) -> dict:
    return {"Authorization": f"Bearer {c.tokens[role]}"}


def roi_audits(h) -> list:
    with h.db.connect() as conn:
        return conn.execute(
            select(audit).where(audit.c.target_type == "roi_request").order_by(audit.c.id)
        ).all()


def test_api_request_to_authorization_with_roles_and_audit(client, h):
    clerk, rel = bearer(client, "clerk"), bearer(client, "release")
    body = {
        "mrn": "100001",
        "requester_type": "attorney",
        "requester_name": "Smith & Partners LLP",
        "requester_address": "1 Court Street\nSpringfield IL 62701",
        "scope": {"from": "2026-11-01", "to": "2026-11-30"},
        "purpose": "legal",
        "delivery": "mail",
        "received_on": "2026-12-01",
    }
    r = client.post("/api/roi/requests", json=body, headers=clerk)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert r.json()["due_on"] == "2026-12-31"
    assert client.post("/api/roi/requests", json={**body, "mrn": "NOPE"}, headers=clerk).status_code == 404
    assert client.post("/api/roi/requests", json=body, headers=bearer(client, "analyst")).status_code == 403
    r = client.post(f"/api/roi/requests/{rid}/verify", json={"checks": {"organization": True}}, headers=clerk)
    assert r.json() == {"verified": True, "missing": []}
    assert (
        client.post(
            f"/api/roi/requests/{rid}/status", json={"status": "in_progress"}, headers=clerk
        ).status_code
        == 403
    )
    for s in ("in_progress", "ready"):
        r = client.post(f"/api/roi/requests/{rid}/status", json={"status": s}, headers=rel)
        assert r.status_code == 200 and r.json()["status"] == s, r.text
    r = client.post(f"/api/roi/requests/{rid}/status", json={"status": "received"}, headers=rel)
    assert r.status_code == 409
    auth = {"checklist": COMPLETE, "form_base64": base64.b64encode(FORM).decode(), "form_name": "auth.pdf"}
    assert client.post(f"/api/roi/requests/{rid}/authorization", json=auth, headers=clerk).status_code == 403
    r = client.post(f"/api/roi/requests/{rid}/authorization", json=auth, headers=rel)
    assert r.status_code == 200 and r.json()["problems"] == [], r.text
    form = client.get(f"/api/roi/requests/{rid}/authorization/form", headers=rel)
    assert form.content == FORM and form.headers["content-type"] == "application/pdf"
    detail = client.get(f"/api/roi/requests/{rid}", headers=clerk).json()
    assert detail["release_problems"] == [] and detail["authorization"]["form_name"] == "auth.pdf"
    docs = client.get(f"/api/roi/requests/{rid}/documents", headers=rel).json()["documents"]
    assert {d["document_number"] for d in docs if d["selected"]} == {"NOTE-1", "DOC-1002"}
    r = client.post(f"/api/roi/requests/{rid}/extend", json={"reason": "off-site"}, headers=rel)
    assert r.json() == {"due_on": "2027-01-30"}
    assert (
        client.post(f"/api/roi/requests/{rid}/extend", json={"reason": "x"}, headers=rel).status_code == 409
    )
    queue = client.get("/api/roi/requests", headers=clerk).json()["requests"]
    assert [q["id"] for q in queue] == [rid] and queue[0]["status_label"] == "Ready"
    actions = [(a.user, a.action, a.target_id) for a in roi_audits(h)]
    assert ("clerk1", "roi_new", str(rid)) in actions and ("release1", "roi_authorize", str(rid)) in actions
    assert ("release1", "roi_view_form", str(rid)) in actions and ("clerk1", "roi_list", None) in actions


def test_api_disclosures_and_accounting(client, h):
    rel = bearer(client, "release")
    body = {
        "mrn": "100001",
        "disclosed_on": "2026-03-03",
        "recipient_name": "County Health Department",
        "recipient_type": "public_health",
        "purpose": "Communicable disease report",
        "basis": "public_health",
        "description": "Laboratory result",
    }
    r = client.post("/api/roi/disclosures", json=body, headers=rel)
    assert r.status_code == 201 and r.json()["source"] == "manual", r.text
    assert client.post("/api/roi/disclosures", json={**body, "basis": "whim"}, headers=rel).status_code == 400
    log = client.get("/api/roi/disclosures", params={"mrn": "100001"}, headers=rel).json()
    assert [d["recipient_name"] for d in log["disclosures"]] == ["County Health Department"]
    assert (
        client.get(
            "/api/roi/disclosures", params={"mrn": "100001"}, headers=bearer(client, "clerk")
        ).status_code
        == 403
    )
    acc = client.post("/api/roi/accounting", json={"mrn": "100001"}, headers=rel)
    assert acc.status_code == 200 and acc.json()["from"] == "2020-12-10", acc.text
    assert len(acc.json()["disclosures"]) == 1 and acc.json()["record_id"]
    bad = client.post("/api/roi/accounting", json={"mrn": "100001", "from": "2019-01-01"}, headers=rel)
    assert bad.status_code == 400 and "at most 6 years" in bad.json()["detail"]
    assert "/api/roi/accounting" in client.app.openapi()["paths"]


# -- the CLI -----------------------------------------------------------------------------------


class Args:
    def __init__(self, db_url: str, var):
        self.db, self.var = db_url, str(var)


def cli(h, db_url, tmp_path, *argv) -> tuple[int, str]:
    from interface.ops import roi_cli

    out = io.StringIO()
    code = roi_cli.main(["--user", "rel1", *argv], Args(db_url, tmp_path), now=NOW, out=out)
    return code, out.getvalue()


def test_cli_from_receipt_to_authorization_and_the_accounting(h, db_url, tmp_path, capsys):
    code, out = cli(
        h,
        db_url,
        tmp_path,
        "new",
        "--mrn",
        "100001",
        "--requester-type",
        "attorney",
        "--requester-name",
        "Smith & Partners LLP",
        "--address",
        "1 Court Street",
        "--purpose",
        "legal",
        "--delivery",
        "mail",
        "--received",
        "2026-12-01",
        "--from",
        "2026-11-01",
    )
    assert code == 0 and "due 2026-12-31" in out, out
    rid = int(out.split()[1])
    assert cli(h, db_url, tmp_path, "verify", str(rid), "--check", "organization")[0] == 0
    assert cli(h, db_url, tmp_path, "status", str(rid), "in_progress")[0] == 0
    form = tmp_path / "auth.pdf"
    form.write_bytes(FORM)
    checklist = tmp_path / "checklist.json"
    checklist.write_text(json.dumps({k: v for k, v in COMPLETE.items() if k != "redisclosure_statement"}))
    code, out = cli(
        h, db_url, tmp_path, "authorize", str(rid), "--form", str(form), "--checklist", str(checklist)
    )
    assert code == 0 and "Blocks release: The request is in progress, not ready" in out
    assert "Missing element: The statement that disclosed information may be redisclosed" in out
    code, out = cli(
        h, db_url, tmp_path, "authorize", str(rid), "--checklist", str(checklist), "--redisclosure-statement"
    )
    assert "Blocks release: Missing element" not in out
    code, _ = cli(h, db_url, tmp_path, "status", str(rid), "received")
    assert code == 1 and "cannot become received" in capsys.readouterr().err
    code, out = cli(h, db_url, tmp_path, "list")
    assert code == 0 and f"{rid}\tIn progress\tdue 2026-12-31" in out
    code, out = cli(h, db_url, tmp_path, "show", str(rid), "--json")
    assert json.loads(out)["authorization"]["form_sha256"] == content.sha256_hex(FORM)
    code, out = cli(
        h, db_url, tmp_path, "log-disclosure", "--mrn", "100001", "--on", "2026-05-01", "--recipient", "Circuit Court",
        "--recipient-type", "court_order", "--purpose", "Subpoena", "--basis", "court_order", "--description", "Chart copy",
    )  # fmt: skip
    assert code == 0 and "disclosure" in out
    code, out = cli(h, db_url, tmp_path, "accounting", "--mrn", "100001", "--json")
    assert [d["recipient_name"] for d in json.loads(out)["disclosures"]] == ["Circuit Court"]
    with h.db.connect() as conn:
        rows = conn.execute(
            select(audit.c.user, audit.c.action).where(audit.c.target_type == "roi_request")
        ).all()
    assert ("rel1", "roi_new") in rows and ("rel1", "roi_accounting") in rows


def test_cli_imports_the_sample_requests(h, db_url, tmp_path):
    code, out = cli(h, db_url, tmp_path, "import", str(SAMPLES / "roi" / "requests.yaml"))
    assert code == 0 and out.count("received") == 3, out
    code, out = cli(h, db_url, tmp_path, "list", "--json")
    rows = json.loads(out)
    assert {r["requester_type"] for r in rows} == {"patient", "provider", "attorney"}
    assert next(r for r in rows if r["requester_type"] == "provider")["fee_estimate"]["free"]


# -- the release (with interface.desk.roi_packet) ----------------------------------------------


def _pdf_text(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [p.extract_text() or "" for p in PdfReader(io.BytesIO(data)).pages]


def test_a_release_builds_stores_and_logs_the_packet_and_again_makes_a_new_one(h):
    rid = attorney(h)
    ready(h, rid, checks=("organization",))
    do(h, roi.authorize, S, rid, COMPLETE, user="rel1", store_=store_of(), form=FORM)
    with pytest.raises(RoiError, match="PSY-1 cannot be released: Sensitive"):
        do(h, roi_release.release, S, rid, user="rel1", store_=store_of(), selected=["PSY-1"])
    with pytest.raises(RoiError, match="say why the page is left out"):
        do(
            h,
            roi_release.release,
            S,
            rid,
            user="rel1",
            store_=store_of(),
            page_exclusions={"DOC-1002": [(1, "")]},
        )
    done = do(h, roi_release.release, S, rid, user="rel1", store_=store_of())
    with h.db.connect() as conn:
        packet, data = roi_release.packet_pdf(conn, done["packet_id"], store_of())
    assert content.sha256_hex(data) == done["sha256"] == packet["sha256"]
    pages = _pdf_text(data)
    assert len(pages) == done["page_count"] == packet["page_count"]
    assert all(f"request {rid}, page {i} of {len(pages)}" in t for i, t in enumerate(pages, 1))
    assert "Smith & Partners LLP" in pages[0] and "RIVERA" in pages[0]
    # paper by mail: the fee counts the packet's pages, plus postage
    assert done["fee"]["cents"] == 25 * done["page_count"] and packet["fee_cents"] == done["fee"]["cents"]
    assert f"{done['page_count']} page(s)" in " ".join(done["fee"]["lines"])
    manifest = packet["manifest"]["documents"]
    assert [m["document_number"] for m in manifest] == ["NOTE-1", "DOC-1002"]
    with h.db.connect() as conn:
        by_number = {c["document_number"]: c for c in roi_release.candidates(conn, roi.get(conn, rid))}
    assert all(m["sha256"] == by_number[m["document_number"]]["content_sha256"] for m in manifest)
    v = view(h, rid)
    assert v["status"] == "released" and v["events"][-1]["action"] == "release"
    [d] = v["disclosures"]
    assert d["packet_sha256"] == done["sha256"] and d["basis"] == "authorization" and d["authorization_id"]
    assert d["recipient_address"].startswith("1 Court Street") and d["source"] == "release"
    # releasing again (one page left out, with its reason) makes a new packet; the first is unchanged
    again = do(
        h, roi_release.release, S, rid, user="rel1", store_=store_of(), selected=["DOC-1002"],
        page_exclusions={"DOC-1002": [(1, "third party's information")]},
    )  # fmt: skip
    assert again["packet_id"] != done["packet_id"] and again["sha256"] != done["sha256"]
    with h.db.connect() as conn:
        assert roi_release.packet_pdf(conn, done["packet_id"], store_of())[1] == data
        second = roi_release.packet_pdf(conn, again["packet_id"], store_of())[0]
    assert second["manifest"]["documents"][0]["excluded_pages"] == [[1, "third party's information"]]
    assert len(view(h, rid)["disclosures"]) == 2
    # the release is accounted for? authorization is excluded by default (164.528(a)(1)(iv))
    result = do(h, roi.accounting, S, "100001", start=None, end=None, today=TODAY, user="rel1")
    assert result["disclosures"] == [] and result["excluded"] == 2


def test_a_provider_release_with_a_summary_page_and_the_accounting_letter(h):
    rid = new(
        h,
        requester_type="provider",
        requester_name="Dr. Lee",
        requester_address="9 Elm Street",
        purpose="continuity_of_care",
        delivery="mail",
        scope={"document_types": ["PN"]},
        summary_page=True,
    )
    ready(h, rid, checks=("organization",))
    done = do(h, roi_release.release, S, rid, user="rel1", store_=store_of())
    assert done["fee"]["cents"] == 0 and done["fee"]["lines"] == ["No fee (Continuity of care)"]
    with h.db.connect() as conn:
        _, data = roi_release.packet_pdf(conn, done["packet_id"], store_of())
    assert any("RIVERA" in t and "MRN" in t for t in _pdf_text(data)[1:2])  # the chart summary page
    manual(h, "2026-03-03", "public_health")
    result = do(h, roi.accounting, S, "100001", start=None, end=None, today=TODAY, user="rel1")
    assert [d["basis"] for d in result["disclosures"]] == ["public_health"]
    letter = roi_release.accounting_pdf(result)
    text = " ".join(_pdf_text(letter))
    assert "County Health Department" in text and "100001" in text


def test_api_release_and_download(client, h):
    rel = bearer(client, "release")
    rid = new(h, delivery="secure_download")
    ready(h, rid)
    r = client.post(f"/api/roi/requests/{rid}/release", json={}, headers=rel)
    assert r.status_code == 200, r.text
    body = r.json()
    got = client.get(f"/api/roi/packets/{body['packet_id']}", headers=rel)
    assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
    assert content.sha256_hex(got.content) == body["sha256"] == got.headers["x-content-sha256"]
    assert body["fee"]["cents"] == 650
    assert (
        client.get(f"/api/roi/packets/{body['packet_id']}", headers=bearer(client, "clerk")).status_code
        == 403
    )
    assert client.get("/api/roi/packets/999", headers=rel).status_code == 404
    pdf = client.post("/api/roi/accounting", json={"mrn": "100001", "format": "pdf"}, headers=rel)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert {a.action for a in roi_audits(h)} >= {"roi_release", "roi_packet_download", "roi_accounting"}


def test_the_roi_overdue_alert(h, tmp_path):
    from interface.ops.alert_rules import load_alerts
    from interface.ops.alerts import Evaluator

    f = tmp_path / "alerts.yaml"
    f.write_text("rules:\n  - {name: roi-late, type: roi_overdue}\n")
    clock = [NOW]
    evaluator = Evaluator(h.db, load_alerts(f), clock=lambda: clock[0])
    assert evaluator.evaluate() == []
    late = new(h, received_on="2026-11-01")
    new(h)
    [fired] = evaluator.evaluate()
    assert fired["status"] == "firing" and fired["rule"] == "roi-late"
    assert fired["details"] == {
        "overdue": 1,
        "oldest_due_on": "2026-12-01",
        "oldest_days_overdue": 9,
        "request_ids": [late],
    }
    assert "RIVERA" not in json.dumps(fired) and "100001" not in json.dumps(fired)
    do(h, roi.extend, S, late, "off-site records", user="rel1")
    [resolved] = evaluator.evaluate()
    assert resolved["status"] == "resolved"
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: x, type: roi_overdue, days_overdue: -1}\n")
    from interface.hl7.errors import ConfigError

    with pytest.raises(ConfigError, match="bad.yaml:2:"):
        load_alerts(bad)
