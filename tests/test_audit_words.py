"""The auditor's pages read in words (#17 loose ends): actions, channels (``via``) and target types
from ``interface.rules.words``, an unknown code shown as it is, the CSV keeping the codes plus
their words; and the two deficiency read paths recorded against the patients they list
(``GET /api/deficiencies``, the console worklist's ``?mrn=``)."""

from __future__ import annotations

import csv
import io
import re

from interface.rules import words
from interface.store import audit as store_audit
from tests.test_audit_access import api, auditor, clerk, entries, token  # noqa: F401
from tests.test_pages import APP_NOW, admin, app, seeded, text_of  # noqa: F401


def test_the_audit_codes_have_words_and_unknown_codes_stay_codes():
    assert words.word("audit_action", "break_glass") == "Opened a sensitive record (break the glass)"
    assert words.word("action", "listed") == "Listed in a search result"  # the alias
    assert words.word("audit_action", "made_up_action") == "made_up_action"
    assert words.via_text("cli") == "Command line" and words.via_text("api") == "REST API"
    assert words.via_text(None) == "Engine" and words.via_text("pager") == "pager"
    assert words.word("audit_target", "work_item") == "Error item"
    assert words.word("audit_target", "robot") == "robot"
    # every action the engine writes today has words
    for code in (
        "view", "view_content", "search", "listed", "candidates", "reveal", "break_glass",
        "access_report", "retry", "discard", "resubmit", "file_anyway", "file_to", "send_back",
        "waive_deficiency", "login", "logout", "user_add", "token_create", "scan_upload", "scan_index",
    ):  # fmt: skip
        assert words.word("audit_action", code) != code, code
    for code in store_audit.VIAS:
        assert words.via_text(code) != code


def _rows(html: str, table: str) -> list[dict]:
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    out = []
    for tr in re.findall(r'<tr class="audit-entry">(.*?)</tr>', body, re.S):
        cell = {
            name: text_of(m.group(1)).strip()
            for name in ("audit-action", "audit-via", "audit-target")
            if (m := re.search(rf'<td class="{name}"[^>]*>(.*?)</td>', tr, re.S))
        }
        cell["codes"] = re.findall(r'data-code="([^"]*)"', tr)
        out.append(cell)
    return out


def test_the_audit_log_and_access_report_show_words_with_the_codes_on_hover(
    clerk,
    auditor,
    seeded,  # noqa: F811
):
    assert clerk.get("/patients/100001").status_code == 200
    with seeded.db.begin() as conn:  # a code no table knows yet, written by the engine itself
        store_audit.record(
            conn, user="engine", action="made_up_action", target_type="robot", now=APP_NOW, patient="100001"
        )
    page = auditor.get("/audit", params={"patient": "100001"}).text
    rows = _rows(page, "audit-log")
    assert rows[0] == {
        "audit-action": "made_up_action",
        "audit-via": "Engine",
        "audit-target": "robot",
        "codes": ["made_up_action", "robot", ""],
    }
    viewed = [r for r in rows if r["codes"][:1] == ["view"]]
    assert viewed and viewed[0]["audit-action"] == "Viewed" and viewed[0]["audit-via"] == "Console"
    assert viewed[0]["audit-target"].startswith("Patient 100001")
    assert 'title="view"' in page  # the code on hover
    assert '<option value="break_glass" label="Opened a sensitive record (break the glass)">' in page

    report = auditor.get("/patients/100001/access").text
    actions = [r["audit-action"] for r in _rows(report, "access-report")]
    assert "Read the audit trail" in actions and "Viewed" in actions  # the auditor's look is there
    assert "access_report" not in [text_of(a) for a in actions]

    filtered = auditor.get("/audit", params={"action": "view", "target_type": "patient"}).text
    assert "Showing <strong>Viewed</strong> on <strong>Patient</strong>" in filtered


def test_the_csv_keeps_the_codes_and_adds_their_words(clerk, auditor, api, seeded):  # noqa: F811
    clerk.get("/patients/100001")
    api.get("/api/patients/100001")
    for path in ("/patients/100001/access.csv", "/audit.csv?patient=100001"):
        text = auditor.get(path).text
        header = text.splitlines()[0]
        assert header == ",".join(store_audit.COLUMNS + store_audit.WORD_COLUMNS)
        got = list(csv.DictReader(io.StringIO(text)))
        views = {(r["via"], r["via_words"]) for r in got if r["action"] == "view"}
        assert {("console", "Console"), ("api", "REST API")} <= views
        assert all(r["action_words"] == "Viewed" for r in got if r["action"] == "view")
        assert all(r["target_type_words"] == "Patient" for r in got if r["target_type"] == "patient")
    assert store_audit.to_csv([]).strip() == header


# -- the deficiency worklist, recorded against the patients it lists ------------------------------


def test_the_deficiency_api_records_each_patient_it_lists(api, seeded):  # noqa: F811
    before = len(entries(seeded.db))
    r = api.get("/api/deficiencies")
    assert r.status_code == 200
    listed_mrns = list(dict.fromkeys(d["mrn"] for d in r.json()["deficiencies"]))
    assert listed_mrns, "the seeded data has deficiencies"
    new = entries(seeded.db)[before:]
    assert [e.action for e in new][:1] == ["search"]  # the route's search entry, then the list
    listed = [e for e in new if e.action == "listed"]
    assert [e.patient for e in listed] == listed_mrns
    assert {(e.user, e.via, e.target_type) for e in listed} == {("carl", "api", "deficiency")}

    # filtered by MRN: the search is against that patient, the listing too
    mrn = listed_mrns[0]
    before = len(entries(seeded.db))
    r = api.get("/api/deficiencies", params={"mrn": mrn})
    assert r.status_code == 200 and {d["mrn"] for d in r.json()["deficiencies"]} == {mrn}
    new = entries(seeded.db)[before:]
    assert [(e.action, e.patient) for e in new] == [("search", mrn), ("listed", mrn)]

    # a page that lists nobody: one entry without a patient
    before = len(entries(seeded.db))
    assert api.get("/api/deficiencies", params={"mrn": "999999"}).json()["deficiencies"] == []
    new = entries(seeded.db)[before:]
    assert [(e.action, e.patient) for e in new] == [("search", "999999"), ("listed", None)]
    # the summary lists no patient: only the route's search entry
    before = len(entries(seeded.db))
    api.get("/api/deficiencies/summary")
    assert [e.action for e in entries(seeded.db)[before:]] == ["search"]


def test_the_console_worklist_searched_by_mrn_is_recorded_against_the_patient(clerk, seeded):  # noqa: F811
    before = len(entries(seeded.db))
    page = clerk.get("/deficiencies")
    assert page.status_code == 200 and 'id="deficiencies"' in page.text
    assert entries(seeded.db)[before:] == []  # browsing the worklist writes nothing per patient

    mrn = re.search(r'<a href="/patients/([^"]+)">', page.text.split('id="deficiencies"', 1)[1]).group(1)
    page = clerk.get("/deficiencies", params={"mrn": mrn, "status": "all"})
    assert page.status_code == 200
    (e,) = entries(seeded.db)[before:]
    assert (e.user, e.action, e.target_type, e.patient, e.via) == (
        "carl",
        "search",
        "deficiency",
        mrn,
        "console",
    )
    assert '"status": "all"' in e.detail and mrn not in e.detail

    # an MRN that lists nothing is still recorded against that MRN
    clerk.get("/deficiencies", params={"mrn": "999999"})
    assert entries(seeded.db)[-1].patient == "999999"


def test_an_auditor_finds_the_deficiency_listing_on_the_access_report(api, auditor, seeded):  # noqa: F811
    found = api.get("/api/deficiencies").json()["deficiencies"]
    mrn = found[0]["mrn"]
    report = auditor.get(f"/patients/{mrn}/access").text
    listed = [r for r in _rows(report, "access-report") if r["codes"][:1] == ["listed"]]
    assert listed and listed[0]["audit-action"] == "Listed in a search result"
    assert listed[0]["audit-via"] == "REST API" and listed[0]["audit-target"].startswith("Deficiency")
