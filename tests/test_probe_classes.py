"""Short forms of the probe classes that had no test of their own (docs/reliability.md, "The
probe classes"): absurd fields, invalid UTF-8, the role matrix over every route, and hostile
markup in every field a page shows. Raw bytes in, the answer and the stored effect out.

``SOAK=1`` (``make soak``) runs the absurd-field test at its long-form sizes: a field of 15 MiB
(just under the channel's 16 MiB ``max_frame_bytes``), 100,000 repetitions, 50,000 segments.
"""

from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import select

from interface.desk import users
from interface.store.chart_schema import patients
from interface.store.schema import messages, work_items
from tests.reliability_kit import adt_message
from tests.test_sanitize import adt, setup  # noqa: F401  (fixtures)
from tests.test_web_api import TestClient, app, channels, clock, fast_hashing, h, tokens  # noqa: F401

SOAK = os.environ.get("SOAK") == "1"
MIB = 1 << 20
BIG = 15 * MIB if SOAK else MIB
REPS = 100_000 if SOAK else 10_000
SEGMENTS = 50_000 if SOAK else 5_000


def _msa_err(ack: bytes) -> tuple[str, list[str] | None]:
    segs = ack.decode("utf-8", "replace").split("\r")
    msa = next(s for s in segs if s.startswith("MSA")).split("|")
    err = next((s.split("|") for s in segs if s.startswith("ERR")), None)
    return msa[1], err


def _drain(worker) -> None:
    for _ in range(100):
        if worker.run_once() == 0:
            return
    raise AssertionError("the worker did not drain")


def _stored(engine, message_id: int):
    with engine.connect() as conn:
        row = conn.execute(
            select(messages.c.raw, messages.c.status, messages.c.warning).where(messages.c.id == message_id)
        ).one()
        item = conn.execute(
            select(work_items.c.status, work_items.c.reason, work_items.c.last_error).where(
                work_items.c.message_id == message_id
            )
        ).one()
    return row, item


def _patient(engine, mrn: str):
    with engine.connect() as conn:
        return conn.execute(
            select(patients.c.family, patients.c.given).where(patients.c.mrn == mrn)
        ).one_or_none()


# -- absurd fields -------------------------------------------------------------------------------


def _absurd(case: str, mrn: str, cid: str) -> bytes:
    base = adt_message(mrn, 1, "A04", cid)
    pid3 = f"{mrn}^^^HOSP^MR".encode()
    if case == "huge field":
        return base.replace(b"|REL^", b"|" + b"R" * BIG + b"^")
    if case == "huge mrn":
        return base.replace(pid3, b"M" * BIG + b"^^^HOSP^MR")
    if case == "many repetitions":  # PID-3: the channel's MR among REPS identifiers of another authority
        return base.replace(pid3, b"~".join(b"X%d^^^OTHER^PI" % i for i in range(REPS)) + b"~" + pid3)
    if case == "many segments":
        return base + b"".join(b"NK1|%d|KIN^K%d|SPO\r" % (i + 1, i) for i in range(SEGMENTS))
    if case == "nested delimiters":  # every delimiter inside every other, and stray escapes
        nest = b"A&B^C&D~E&F\\G\\^&~\\X\\\\H" * (REPS // 10)
        return base.replace(b"|19700101|", b"|" + nest + b"|").replace(b"|REL^", b"|REL&" + nest + b"^")
    raise AssertionError(case)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case,answer,effect",
    [
        ("huge field", "AA", ("error", "value_refused", "patients.family")),
        ("huge mrn", "AE", ("error", "value_refused", "PID-3")),
        ("many repetitions", "AA", ("done", None, None)),
        ("many segments", "AA", ("done", None, None)),
        ("nested delimiters", "AA", ("error", "invalid_value", "PID-7")),
    ],
)
def test_absurd_fields_are_answered_within_the_limits_and_kept_raw(engine, setup, adt, case, answer, effect):  # noqa: F811
    """A field of 1 MiB, an MRN of 1 MiB, 10,000 repetitions in PID-3, 5,000 segments, every
    delimiter nested in every other (in PID-5 and in PID-7, the birth date): each is answered
    (AA, or AE 102 at PID-3 for the MRN no column can hold), kept raw byte for byte, and either
    applied or put in the error queue with the column or field named (never a crash, never a pending item retried forever); the next sender's
    ordinary message is AA and applied in the same round.

    Checked that it can fail: with the length check of ``sanitize.Guarded`` removed the huge
    field is stored on SQLite (item ``done``: the effect assertion fails); with
    ``sanitize.mrn_too_long`` returning None the huge MRN is not answered AE 102 at PID-3."""
    eng, worker, _ = setup
    raw = _absurd(case, "ABS001", "ABS-1")
    out = eng.receive(adt, raw)
    code, err = _msa_err(out.ack)
    assert code == answer, err
    if answer == "AE":
        assert err[2] == "PID^1^3" and err[3].startswith("102^")
    ok = eng.receive(adt, adt_message("OK0001", 1, "A04", "OK-1"))
    assert ok.ack_code == "AA"
    _drain(worker)
    row, item = _stored(engine, out.message_id)
    assert bytes(row.raw) == raw
    status, reason, named = effect
    assert (item.status, item.reason) == (status, reason), item.last_error
    if named:
        assert named in item.last_error
        assert _patient(engine, "ABS001") is None
    elif case != "huge mrn":
        assert _patient(engine, "ABS001") is not None
    assert _patient(engine, "OK0001") == ("REL", "S000001")


# -- invalid UTF-8 ---------------------------------------------------------------------------------


def _with_msh18(raw: bytes, charset: bytes) -> bytes:
    msh, rest = raw.split(b"\r", 1)
    return msh + b"||||||" + charset + b"\r" + rest


def test_invalid_utf8_is_kept_raw_replaced_in_the_text_and_warned(engine, setup, adt, app, tokens):  # noqa: F811
    """MSH-18 ``UNICODE UTF-8`` with bytes that are not UTF-8 (a stray 0xFF, a cut two-byte
    sequence): AA with a warning ERR (severity W); the raw bytes stored exactly; U+FFFD in the
    decoded chart value; the warning kept and listed in GET /api/messages/{id} ``warnings``. The
    same bytes without MSH-18 are read in the channel's fallback (Windows-1252): ``ÿ`` and ``Ã``.

    Checked that it can fail: decoding with ``errors="ignore"`` in ``hl7.message.decode`` drops
    the bytes (the chart value loses U+FFFD); not passing the warning to the journal empties
    ``warnings``."""
    eng, worker, _ = setup
    declared = _with_msh18(adt_message("UTF001", 1, "A04", "UTF-1"), b"UNICODE UTF-8").replace(
        b"|REL^", b"|R\xffE\xc3L^"
    )
    out = eng.receive(adt, declared)
    code, err = _msa_err(out.ack)
    assert code == "AA" and err is not None and err[4] == "W"
    undeclared = adt_message("UTF002", 1, "A04", "UTF-2").replace(b"|REL^", b"|R\xffE\xc3L^")
    fallback = eng.receive(adt, undeclared)
    assert fallback.ack_code == "AA"
    _drain(worker)
    row, item = _stored(engine, out.message_id)
    assert bytes(row.raw) == declared and item.status == "done"
    assert _patient(engine, "UTF001").family == "R\ufffdE\ufffdL"
    assert _patient(engine, "UTF002").family == "R\u00ffE\u00c3L"
    with TestClient(app) as c:
        body = c.get(f"/api/messages/{out.message_id}", headers=h(tokens["clerk"])).json()
        assert body["warnings"] and any("UTF-8" in w for w in body["warnings"]), body["warnings"]
        other = c.get(f"/api/messages/{fallback.message_id}", headers=h(tokens["clerk"])).json()
        assert any("Windows-1252" in w for w in other["warnings"]), other["warnings"]
    row, _ = _stored(engine, fallback.message_id)
    assert bytes(row.raw) == undeclared


# -- the role matrix -------------------------------------------------------------------------------

PUBLIC = "public"  # no login needed
ANY = frozenset(users.ROLES)  # any signed-in user
CLERK = frozenset({"clerk", "admin"})
WORK = frozenset({"clerk", "analyst", "admin"})  # messages and the error queue
AUDITOR = frozenset({"auditor", "admin"})
ADMIN = frozenset({"admin"})
ROI_INTAKE = frozenset({"clerk", "release", "admin"})  # log requests, verify identity, the queue
ROI_RELEASE = frozenset({"release", "admin"})  # authorizations, releases, disclosures, accountings

# Every route of the app and who may use it. A route added to the app without a line here fails
# the matrix test: decide its roles, then add it.
MATRIX: dict[tuple[str, str], object] = {
    ("GET", "/api/openapi.json"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/api/health"): PUBLIC,
    ("GET", "/api/docs"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/favicon.ico"): PUBLIC,
    ("GET", "/static/{name}"): PUBLIC,
    ("POST", "/logout"): ANY,
    ("GET", "/api/me"): ANY,
    ("GET", "/api/channels"): ANY,
    ("GET", "/api/events"): ANY,
    ("GET", "/"): ANY,
    ("GET", "/dashboard/channels"): ANY,
    ("GET", "/api/channels/{name}"): ANY,
    ("GET", "/api/stats"): ANY,
    ("GET", "/channels"): ANY,
    ("GET", "/channels/{name}"): ANY,
    ("POST", "/api/channels/{name}/pause"): frozenset({"analyst", "admin"}),
    ("POST", "/api/channels/{name}/resume"): frozenset({"analyst", "admin"}),
    ("POST", "/api/channels/{name}/destinations/{destination}/pause"): frozenset({"analyst", "admin"}),
    ("POST", "/api/channels/{name}/destinations/{destination}/resume"): frozenset({"analyst", "admin"}),
    ("POST", "/api/channels/{name}/destinations/{destination}/retry"): frozenset({"analyst", "admin"}),
    ("POST", "/api/reload"): frozenset({"analyst", "admin"}),
    ("POST", "/channels/{name}/pause"): frozenset({"analyst", "admin"}),
    ("POST", "/channels/{name}/resume"): frozenset({"analyst", "admin"}),
    ("POST", "/channels/{name}/destinations/{destination}/{action}"): frozenset({"analyst", "admin"}),
    ("POST", "/channels/reload"): frozenset({"analyst", "admin"}),
    ("GET", "/api/audit"): AUDITOR,
    ("GET", "/api/audit.csv"): AUDITOR,
    ("GET", "/api/audit/verify"): AUDITOR,
    ("GET", "/audit"): AUDITOR,
    ("GET", "/audit.csv"): AUDITOR,
    ("GET", "/patients/{mrn}/access"): AUDITOR,
    ("GET", "/patients/{mrn}/access.csv"): AUDITOR,
    ("GET", "/api/messages"): WORK,
    ("GET", "/api/messages/{message_id}"): WORK,
    ("POST", "/api/messages/{message_id}/reprocess"): WORK,
    ("POST", "/api/messages/export"): WORK,
    ("POST", "/api/messages/reprocess"): WORK,
    ("GET", "/api/errors"): WORK,
    ("GET", "/api/errors/{item_id}"): WORK,
    ("POST", "/api/errors/{item_id}/retry"): WORK,
    ("POST", "/api/errors/{item_id}/discard"): WORK,
    ("POST", "/api/errors/{item_id}/resubmit"): WORK,
    ("POST", "/api/errors/bulk"): WORK,
    ("GET", "/messages"): WORK,
    ("GET", "/messages/{message_id}"): WORK,
    ("POST", "/messages/{message_id}/reveal"): WORK,
    ("POST", "/messages/export"): WORK,
    ("POST", "/messages/reprocess"): WORK,
    ("GET", "/errors"): WORK,
    ("GET", "/errors/{item_id}"): WORK,
    ("POST", "/errors/{item_id}/reveal"): WORK,
    ("POST", "/errors/{item_id}/retry"): WORK,
    ("POST", "/errors/{item_id}/discard"): WORK,
    ("POST", "/errors/{item_id}/resubmit"): WORK,
    ("POST", "/errors/bulk"): WORK,
    ("GET", "/api/alerts"): frozenset({"analyst", "admin"}),
    ("GET", "/api/patients/{mrn}"): CLERK,
    ("GET", "/api/patients/{mrn}/history"): CLERK,
    ("GET", "/api/patients"): CLERK,
    ("GET", "/fhir/metadata"): PUBLIC,
    ("GET", "/fhir/Patient/{id}"): CLERK,
    ("GET", "/fhir/Patient/{id}/_history"): CLERK,
    ("GET", "/fhir/Patient/{id}/_history/{vid}"): CLERK,
    ("GET", "/fhir/Patient"): CLERK,
    ("GET", "/fhir/DocumentReference/{id}"): CLERK,
    ("GET", "/fhir/DocumentReference"): CLERK,
    ("GET", "/fhir/Binary/{id}"): CLERK,
    ("GET", "/fhir/Binary/{id}/_history/{vid}"): CLERK,
    ("GET", "/fhir/DocumentReference/{id}/_history"): CLERK,
    ("GET", "/fhir/DocumentReference/{id}/_history/{vid}"): CLERK,
    ("GET", "/fhir/Encounter/{id}"): CLERK,
    ("GET", "/fhir/Encounter"): CLERK,
    ("GET", "/fhir/Coverage/{id}"): CLERK,
    ("GET", "/fhir/Coverage"): CLERK,
    ("GET", "/fhir/AllergyIntolerance/{id}"): CLERK,
    ("GET", "/fhir/AllergyIntolerance"): CLERK,
    ("GET", "/fhir/Condition/{id}"): CLERK,
    ("GET", "/fhir/Condition"): CLERK,
    ("GET", "/fhir/AuditEvent/{id}"): AUDITOR,
    ("GET", "/fhir/AuditEvent"): AUDITOR,
    ("GET", "/.well-known/smart-configuration"): PUBLIC,
    ("GET", "/fhir/.well-known/smart-configuration"): PUBLIC,
    ("GET", "/api/documents"): CLERK,
    ("GET", "/api/documents/{document_number}"): CLERK,
    ("GET", "/api/documents/{document_number}/content"): CLERK,
    ("GET", "/api/deficiencies"): CLERK,
    ("GET", "/patients"): CLERK,
    ("GET", "/patients/{mrn}"): CLERK,
    ("POST", "/patients/{mrn}/reveal"): CLERK,
    ("GET", "/documents/{number}"): CLERK,
    ("GET", "/documents/{number}/content"): CLERK,
    ("POST", "/documents/{number}/break-glass"): CLERK,
    ("GET", "/deficiencies"): CLERK,
    ("POST", "/deficiencies/{deficiency_id}/waive"): CLERK,
    # the identity desk: filing decisions and other patients' charts are the clerk's
    ("GET", "/api/errors/{item_id}/identity"): CLERK,
    ("GET", "/api/errors/{item_id}/candidates"): CLERK,
    ("POST", "/api/errors/{item_id}/file-anyway"): CLERK,
    ("POST", "/api/errors/{item_id}/file"): CLERK,
    ("POST", "/api/errors/{item_id}/refile"): CLERK,
    ("POST", "/api/errors/{item_id}/send-back"): CLERK,
    ("POST", "/errors/{item_id}/file-anyway"): CLERK,
    ("POST", "/errors/{item_id}/file"): CLERK,
    ("POST", "/errors/{item_id}/send-back"): CLERK,
    ("GET", "/api/deficiencies/summary"): CLERK,
    ("POST", "/api/deficiencies/{deficiency_id}/waive"): CLERK,
    ("GET", "/api/chart-prep"): CLERK,
    # scanning: analysts see the intake list (no pages, no file names); the rest is the clerk's
    ("GET", "/api/scan/batches"): frozenset({"clerk", "analyst", "admin"}),
    ("POST", "/api/scan/batches"): CLERK,
    ("GET", "/api/scan/documents"): CLERK,
    ("GET", "/api/scan/documents/{doc_id}"): CLERK,
    ("GET", "/api/scan/documents/{doc_id}/pages/{number}"): CLERK,
    ("POST", "/api/scan/documents/{doc_id}/index"): CLERK,
    ("POST", "/api/scan/documents/{doc_id}/rotate"): CLERK,
    ("POST", "/api/scan/documents/{doc_id}/delete-pages"): CLERK,
    ("POST", "/api/scan/documents/{doc_id}/split"): CLERK,
    ("POST", "/api/scan/documents/{doc_id}/merge"): CLERK,
    ("POST", "/api/scan/documents/{doc_id}/delete"): CLERK,
    ("GET", "/chart-prep"): CLERK,
    # the console's scanned paper: analysts see the batch list only (no file names, no pages)
    ("GET", "/scan"): CLERK,
    ("GET", "/scan/batches"): WORK,
    ("POST", "/scan/batches"): CLERK,
    ("GET", "/scan/documents/{doc_id}"): CLERK,
    ("GET", "/scan/documents/{doc_id}/pages/{number}"): CLERK,
    ("GET", "/scan/documents/{doc_id}/delete-pages"): CLERK,
    ("POST", "/scan/documents/{doc_id}/delete-pages"): CLERK,
    ("POST", "/scan/documents/{doc_id}/index"): CLERK,
    ("POST", "/scan/documents/{doc_id}/rotate"): CLERK,
    ("POST", "/scan/documents/{doc_id}/split"): CLERK,
    ("POST", "/scan/documents/{doc_id}/merge"): CLERK,
    ("POST", "/scan/documents/{doc_id}/delete"): CLERK,
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): ADMIN,
    ("POST", "/api/users/{name}/role"): ADMIN,
    ("POST", "/api/users/{name}/disable"): ADMIN,
    ("POST", "/api/users/{name}/enable"): ADMIN,
    ("POST", "/api/users/{name}/password"): ADMIN,
    ("POST", "/api/users/{name}/token"): ADMIN,
    ("GET", "/api/users/{name}/tokens"): ADMIN,
    ("POST", "/api/users/{name}/tokens/{token_id}/revoke"): ADMIN,
    ("GET", "/api/roi/requests"): ROI_INTAKE,
    ("POST", "/api/roi/requests"): ROI_INTAKE,
    ("GET", "/api/roi/requests/{request_id}"): ROI_INTAKE,
    ("POST", "/api/roi/requests/{request_id}/verify"): ROI_INTAKE,
    ("POST", "/api/roi/requests/{request_id}/status"): ROI_RELEASE,
    ("POST", "/api/roi/requests/{request_id}/deny"): ROI_RELEASE,
    ("POST", "/api/roi/requests/{request_id}/extend"): ROI_RELEASE,
    ("POST", "/api/roi/requests/{request_id}/authorization"): ROI_RELEASE,
    ("POST", "/api/roi/requests/{request_id}/authorization/revoke"): ROI_RELEASE,
    ("GET", "/api/roi/requests/{request_id}/authorization/form"): ROI_RELEASE,
    ("GET", "/api/roi/requests/{request_id}/documents"): ROI_RELEASE,
    ("POST", "/api/roi/requests/{request_id}/release"): ROI_RELEASE,
    ("GET", "/api/roi/requests/{request_id}/preview"): ROI_RELEASE,
    ("POST", "/api/roi/requests/{request_id}/preview"): ROI_RELEASE,
    ("GET", "/api/roi/packets/{packet_id}"): ROI_RELEASE,
    ("GET", "/api/roi/disclosures"): ROI_RELEASE,
    ("POST", "/api/roi/disclosures"): ROI_RELEASE,
    ("POST", "/api/roi/accounting"): ROI_RELEASE,
    ("GET", "/roi"): ROI_INTAKE,
    ("GET", "/roi/new"): ROI_INTAKE,
    ("POST", "/roi/new"): ROI_INTAKE,
    ("GET", "/roi/{request_id}"): ROI_INTAKE,
    ("POST", "/roi/{request_id}/verify"): ROI_INTAKE,
    ("POST", "/roi/{request_id}/status"): ROI_RELEASE,
    ("POST", "/roi/{request_id}/deny"): ROI_RELEASE,
    ("POST", "/roi/{request_id}/extend"): ROI_RELEASE,
    ("POST", "/roi/{request_id}/authorization"): ROI_RELEASE,
    ("POST", "/roi/{request_id}/revoke"): ROI_RELEASE,
    ("POST", "/roi/{request_id}/release"): ROI_RELEASE,
    ("GET", "/roi/{request_id}/preview.pdf"): ROI_RELEASE,
    ("POST", "/roi/{request_id}/preview.pdf"): ROI_RELEASE,
    ("GET", "/roi/packets/{packet_id}"): ROI_RELEASE,
    ("GET", "/roi/disclosures"): ROI_RELEASE,
    ("POST", "/roi/disclosures"): ROI_RELEASE,
    ("POST", "/roi/accounting"): ROI_RELEASE,
    # delivery of released records: the clerk's links and e-mails; the recipient's download (a token, no sign-in)
    ("GET", "/api/roi/requests/{request_id}/delivery"): ROI_RELEASE,
    ("POST", "/api/roi/packets/{packet_id}/links"): ROI_RELEASE,
    ("POST", "/api/roi/links/{link_id}/revoke"): ROI_RELEASE,
    ("GET", "/api/roi/outbox"): ROI_RELEASE,
    ("POST", "/api/roi/outbox/{email_id}/send"): ROI_RELEASE,
    ("POST", "/roi/{request_id}/links"): ROI_RELEASE,
    ("POST", "/roi/{request_id}/links/{link_id}/revoke"): ROI_RELEASE,
    ("POST", "/roi/{request_id}/emails/{email_id}/send"): ROI_RELEASE,
    ("GET", "/download/{token}"): PUBLIC,
    ("GET", "/download/{token}/packet.pdf"): PUBLIC,
    ("GET", "/users"): ADMIN,
    ("POST", "/users/add"): ADMIN,
    ("POST", "/users/role"): ADMIN,
    ("POST", "/users/disable"): ADMIN,
    ("POST", "/users/enable"): ADMIN,
    ("POST", "/users/password"): ADMIN,
    ("POST", "/users/token"): ADMIN,
    ("POST", "/users/revoke-token"): ADMIN,
}


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers flattened; HEAD, which
    Starlette adds to every GET, left out."""
    try:  # newer FastAPI keeps each included router as one entry of app.routes
        from fastapi.routing import iter_route_contexts
    except ImportError:  # earlier versions copy every route into app.routes
        routes = app.routes
    else:
        routes = iter_route_contexts(app.routes)
    found = set()
    for route in routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add((method, route.path))
    return found


def test_every_route_is_in_the_role_matrix_and_answers_it(app, tokens):  # noqa: F811
    """Every route of the app, enumerated from ``app.routes``: without credentials 401 (a
    console page asked for HTML: a redirect to /login); with a token of a role not allowed 403;
    with an allowed role neither 401 nor 403 (dummy parameters: 200, 404 or 422). A route that is
    not in MATRIX fails the test, so a new route cannot be left unguarded by accident.

    Checked that it can fail: an extra ``@router.get("/api/probe")`` without ``require`` fails
    the enumeration; changing ``CHARTS`` in ``web/auth.py`` to ``("clerk", "analyst")`` gives
    analyst 200 on /api/patients (expected 403)."""
    served = app_routes(app)
    assert served == set(MATRIX), {
        "served but not in MATRIX (decide its roles)": sorted(served - set(MATRIX)),
        "in MATRIX but not served": sorted(set(MATRIX) - served),
    }
    wrong = []
    with TestClient(app, base_url="http://testserver") as c:
        for (method, template), allowed in sorted(MATRIX.items()):
            path = re.sub(r"\{[^}]+\}", "1", template)
            anon = c.request(method, path)
            if allowed is PUBLIC:  # (POST /login without the form's token is 403: login CSRF)
                if anon.status_code == 401:
                    wrong.append((method, template, "anonymous", anon.status_code))
                continue
            if anon.status_code != 401:
                wrong.append((method, template, "anonymous", anon.status_code))
            if method == "GET" and not template.startswith(("/api/", "/fhir/")):
                page = c.get(path, headers={"accept": "text/html"}, follow_redirects=False)
                if page.status_code not in (302, 303, 307) or "/login" not in page.headers.get(
                    "location", ""
                ):
                    wrong.append((method, template, "anonymous page", page.status_code))
            for role in users.ROLES:
                r = c.request(method, path, headers=h(tokens[role]), follow_redirects=False)
                if role in allowed:
                    if r.status_code in (401, 403):
                        wrong.append((method, template, role, r.status_code))
                elif r.status_code != 403:
                    wrong.append((method, template, role, r.status_code))
    assert not wrong, wrong


# -- hostile markup in every field a page shows ----------------------------------------------------

XSS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>')


def test_markup_in_message_fields_is_escaped_on_every_page(engine, setup, adt, app, tokens):  # noqa: F811
    """A sender puts ``<script>`` and an ``onerror`` attribute in MSH-3, MSH-10, PID-5, PV1-3 and
    a second message's PID-7 (which fails into the error queue): no console page (dashboard,
    message list, every tab of the message, error queue, the item, patient search, the chart, the
    audit log) carries either string unescaped, and the escaped text is shown (the payload did
    reach the pages). The browser side (CSP, no inline script) is tests/test_webheaders.py.

    Checked that it can fail: with ``autoescape`` turned off in ``web/pages.py``'s
    ``Jinja2Templates`` the message list shows ``<script>alert(1)</script>``."""
    eng, worker, _ = setup
    a, b = XSS
    good = (
        adt_message("XSS001", 1, "A04", f"X{a}")
        .replace(b"RELSEND", b.encode())
        .replace(b"|REL^S000001", f"|{a}^{b}".encode())
        .replace(b"|W1^1^A^HOSP", f"|{b}^1^A^HOSP".encode())
    )
    bad = adt_message("XSS001", 2, "A08", f"Y{b}", birth_date=a).replace(b"RELSEND", b.encode())
    outs = [eng.receive(adt, raw) for raw in (good, bad)]
    assert [o.ack_code for o in outs] == ["AA", "AA"]
    _drain(worker)
    with engine.connect() as conn:
        [failed] = conn.execute(select(work_items.c.id).where(work_items.c.status == "error")).scalars().all()
    pages = [
        "/",
        "/dashboard/channels",
        "/messages",
        "/errors",
        f"/errors/{failed}",
        "/patients?family=%3Cscript",
    ]
    pages += ["/patients/XSS001", "/audit"]
    for out in outs:
        pages += [f"/messages/{out.message_id}?tab={tab}" for tab in ("parsed", "raw", "ack", "history")]
    shown = set()
    with TestClient(app, base_url="http://testserver") as c:
        c.headers.update({**h(tokens["admin"]), "accept": "text/html"})
        for page in pages:
            r = c.get(page)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (
                page,
                r.status_code,
            )
            for payload in XSS:
                assert payload not in r.text, (page, payload)
            if "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text:
                shown.add(page)
    assert "/patients/XSS001" in shown and "/messages" in shown, shown
