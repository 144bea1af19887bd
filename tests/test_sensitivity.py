"""Sensitive records (#17 section 3): the classifier and its rules file, and in the console the
banner, "break the glass" (a reason required, audited against the patient, an alert), the content
routes (console, API, FHIR) refused without it."""

from __future__ import annotations

import json
import re
import warnings
from datetime import timedelta
from pathlib import Path

import pytest

from interface.hl7.errors import ConfigError
from interface.ops import cli
from interface.ops.alert_rules import load_alerts
from interface.ops.alerts import Evaluator
from interface.ops.notify import Dispatcher
from interface.rules import sensitivity
from interface.rules.sensitivity import Category, SensitivityRules, classify, excluded_from_release
from tests.conftest import Clock
from tests.test_pages import APP_NOW, admin, app, audit_rows, seeded, text_of, use_session  # noqa: F401

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "rules" / "sensitivity.yaml"


# -- the classifier -------------------------------------------------------------------------------


def test_the_shipped_rules_classify_by_confidentiality_code_and_document_type():
    rules = sensitivity.load_rules(SHIPPED)
    assert classify("PR", "HIV", rules) == {"hiv"}
    assert classify("PR", "hiv^HIV related^L", rules) == {"hiv"}  # a coded value by its code
    assert classify("PSYTX", "U", rules) == {"psychotherapy_notes"}
    assert classify("SUD", "ETH", rules) == {"substance_use_disorder"}
    assert classify("GEN", None, rules) == {"genetic"}
    assert classify("PN", "SEX", rules) == {"reproductive_health"}
    assert classify("PSYTX", "V", rules) == {"psychotherapy_notes", "very_restricted"}
    assert classify("HP", "U", rules) == frozenset() == classify(None, None, rules)
    assert classify("HP", "R", rules) == frozenset()  # restricted, not a sensitive category here
    # the built-in categories are the file's five of the rule, in the same words
    assert [c.model_dump() for c in sensitivity.BUILTIN.categories] == [
        c.model_dump() for c in rules.categories[:5]
    ]


def test_a_release_excludes_what_the_authorization_does_not_name():
    rules = sensitivity.load_rules(SHIPPED)
    cats = classify("PSYTX", "HIV", rules)
    out = excluded_from_release(cats, {"hiv"}, rules)
    assert [c for c, _ in out] == ["psychotherapy_notes"]
    assert "164.508(a)(2)" in out[0][1]
    assert excluded_from_release(cats, {"hiv", "psychotherapy_notes"}, rules) == []
    both = excluded_from_release({"substance_use_disorder", "hiv", "retired_one"}, (), rules)
    assert [c for c, _ in both] == [
        "substance_use_disorder",
        "hiv",
        "retired_one",
    ]  # file order, unknown last
    assert "42 CFR Part 2" in both[0][1]
    assert sensitivity.labels({"hiv", "genetic"}, rules) == ["HIV-related information", "genetic information"]


def test_a_hospital_adds_its_own_category():
    rules = SensitivityRules(
        categories=[
            Category(id="vip", label="VIP patient", confidentiality=["vip"], release="ask the office")
        ]
    )
    assert classify("PR", "VIP", rules) == {"vip"}
    assert excluded_from_release({"vip"}, set(), rules) == [("vip", "ask the office")]


def test_a_bad_rules_file_is_file_line_errors_in_interface_check(tmp_path, capsys):
    d = tmp_path / "rules"
    d.mkdir()
    bad = d / "sensitivity.yaml"
    bad.write_text(
        "version: 1\ncategories:\n"
        "  - id: hiv\n    label: HIV\n    confidentiality: [HIV]\n    release: named only\n"
        "  - id: Bad Id\n    label: x\n    release: y\n    confidentiality: [X]\n"
        "  - id: empty\n    label: nothing decides it\n    release: z\n"
    )
    with pytest.raises(ConfigError) as exc:
        sensitivity.load_rules(bad)
    problems = exc.value.problems
    assert any(p.startswith(f"{bad}:7:") and "id" in p for p in problems), problems
    assert any(p.startswith(f"{bad}:11:") and "names no confidentiality code" in p for p in problems), (
        problems
    )
    assert cli.main(["check", str(bad)]) == 1
    out = capsys.readouterr()
    assert f"{bad}:11:" in out.out + out.err
    assert cli.main(["check", str(SHIPPED)]) == 0


def test_the_default_rules_are_the_file_else_the_builtin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sensitivity.default_rules() is sensitivity.BUILTIN
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "sensitivity.yaml").write_text(
        "categories:\n  - id: vip\n    label: VIP\n    confidentiality: [VIP]\n    release: ask first\n"
    )
    assert [c.id for c in sensitivity.default_rules().categories] == ["vip"]


# -- the console ----------------------------------------------------------------------------------

# DOC-1005 is an addendum (AD, text) and DOC-1002 a consultation (CN, PDF) in the seeded data
TEST_RULES = SensitivityRules(
    categories=[
        Category(id="hiv", label="HIV-related information", document_types=["AD"], release="named only"),
        Category(id="genetic", label="genetic information", document_types=["CN"], release="named only"),
    ]
)


@pytest.fixture
def sensitive_app(app):  # noqa: F811
    app.state.sensitivity_rules = TEST_RULES
    return app


@pytest.fixture
def clerk(sensitive_app, seeded):  # noqa: F811
    with TestClient(sensitive_app, base_url="http://testserver") as c:
        c.headers["accept"] = "text/html"
        c.csrf = use_session(c, "carl")
        yield c


def test_a_sensitive_document_shows_a_banner_and_no_content_until_a_reason_is_given(clerk, seeded):  # noqa: F811
    page = clerk.get("/documents/DOC-1005").text
    banner = re.search(r'<p class="warning sensitive-banner"[^>]*>(.*?)</p>', page, re.S)
    assert banner and "Sensitive record:" in banner.group(1) and "HIV-related information" in banner.group(1)
    assert 'id="break-glass"' in page and 'id="document-text"' not in page
    assert "Blood cultures negative" not in page
    assert 'id="patient-banner"' in page  # the patient banner stays
    # the content route refuses without a reason
    assert clerk.get("/documents/DOC-1005/content").status_code == 403
    # a document of no sensitive category is as before
    other = clerk.get("/documents/DOC-3001").text
    assert "sensitive-banner" not in other and 'id="break-glass"' not in other


def test_breaking_the_glass_needs_a_reason_and_is_audited_against_the_patient(clerk, seeded):  # noqa: F811
    r = clerk.post("/documents/DOC-1005/break-glass", data={"csrf_token": clerk.csrf, "reason": "  "})
    assert r.status_code == 400 and "Give a reason to open it." in r.text and 'id="break-glass"' in r.text
    assert "Blood cultures negative" not in r.text
    no_csrf = clerk.post("/documents/DOC-1005/break-glass", data={"reason": "curious"})
    assert no_csrf.status_code == 403
    assert not audit_rows(seeded.db, action="break_glass")

    r = clerk.post(
        "/documents/DOC-1005/break-glass",
        data={"csrf_token": clerk.csrf, "reason": "RoI request 42, patient's own access"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/documents/DOC-1005"
    page = clerk.get("/documents/DOC-1005").text
    assert 'id="document-text"' in page and "Blood cultures negative" in page
    assert "sensitive-banner" in page  # the banner stays
    (row,) = audit_rows(seeded.db, action="break_glass")
    assert (row.user, row.target_type, row.target_id) == ("carl", "document", "DOC-1005")
    assert row.reason == "RoI request 42, patient's own access"
    assert json.loads(row.detail) == {"categories": ["hiv"], "via": "console"}
    if "patient" in row._mapping:  # the patient column (#17 section 6, in parallel)
        assert row.patient == "100001"
    # another user has not broken the glass
    with TestClient(clerk.app, base_url="http://testserver") as other:
        use_session(other, "ada")
        assert other.get("/documents/DOC-1005/content").status_code == 403


def test_a_pdf_opens_after_the_reason_and_the_reason_expires(clerk, seeded, sensitive_app):  # noqa: F811
    clerk.post(
        "/documents/DOC-1002/break-glass", data={"csrf_token": clerk.csrf, "reason": "continuity of care"}
    )
    page = clerk.get("/documents/DOC-1002").text
    assert "genetic information" in page and '<object data="/documents/DOC-1002/content"' in page
    assert clerk.get("/documents/DOC-1002/content").content.startswith(b"%PDF")
    later = APP_NOW + timedelta(minutes=31)
    sensitive_app.state.clock = lambda: later
    assert clerk.get("/documents/DOC-1002/content").status_code == 403
    assert 'id="break-glass"' in clerk.get("/documents/DOC-1002").text


def test_the_api_and_fhir_need_the_reason_too(clerk, seeded):  # noqa: F811
    r = clerk.get("/api/documents/DOC-1002/content")
    assert r.status_code == 403 and r.json()["categories"] == ["genetic"]
    assert clerk.get("/fhir/Binary/DOC-1002").status_code == 403
    ok = clerk.get("/api/documents/DOC-1002/content", params={"reason": "court order 2026-17"})
    assert ok.status_code == 200 and ok.content.startswith(b"%PDF")
    (row,) = audit_rows(seeded.db, action="break_glass")
    assert row.reason == "court order 2026-17" and json.loads(row.detail)["via"] == "api"
    assert clerk.get("/fhir/Binary/DOC-1002").status_code == 200  # within the half hour
    assert clerk.get("/api/documents/DOC-3001/content").status_code == 200  # not sensitive


def test_breaking_the_glass_raises_the_sensitive_access_alert(clerk, seeded, tmp_path):  # noqa: F811
    cfg_file = tmp_path / "alerts.yaml"
    cfg_file.write_text("rules:\n  - name: sensitive-access\n    type: sensitive_access\n    minutes: 60\n")
    clock = Clock(APP_NOW - timedelta(minutes=1))
    ev = Evaluator(seeded.db, load_alerts(cfg_file), clock=clock, dispatcher=Dispatcher())
    assert ev.evaluate() == []
    clerk.post("/documents/DOC-1005/break-glass", data={"csrf_token": clerk.csrf, "reason": "RoI request 42"})
    clock.advance(120)
    (fired,) = ev.evaluate()
    assert fired["status"] == "firing" and fired["rule"] == "sensitive-access"
    assert fired["details"]["users"] == ["carl"] and fired["details"]["openings"] == 1
    assert fired["details"]["audit_ids"] == [audit_rows(seeded.db, action="break_glass")[0].id]
    text = json.dumps(fired)
    for phi in ("100001", "RIVERA", "Rivera", "DOC-1005", "hiv", "RoI request 42"):
        assert phi not in text  # no patient, document, category or reason in an alert
    clock.advance(60)
    assert ev.evaluate() == []  # nothing new: no second notice
    clerk.post("/documents/DOC-1002/break-glass", data={"csrf_token": clerk.csrf, "reason": "RoI request 43"})
    (again,) = ev.evaluate()
    assert again["status"] == "firing" and again["details"]["openings"] == 1
    clock.advance(3600)
    (resolved,) = ev.evaluate()
    assert resolved["status"] == "resolved"
    assert "/audit?action=break_glass" in (resolved["link"] or "/audit?action=break_glass")


def test_the_example_alerts_file_has_the_rule():
    cfg = load_alerts(ROOT / "alerts.yaml")
    assert any(r.type == "sensitive_access" for r in cfg.rules)
