"""The release-of-information rules (interface.rules.roi), pure: due dates and the one extension,
fees, the legal basis, the 164.508(c) authorization elements (each missing one named; expiry and
revocation block), the accounting's exclusions and its six-year limit; the rules file is valid
and a bad one is a ``file:line:`` error."""

from __future__ import annotations

from datetime import date

import pytest

from interface.hl7.errors import ConfigError
from interface.rules import roi as rules
from interface.rules.roi import RoiSettings, load_settings
from tests.conftest import ROOT

S = RoiSettings()
TODAY = date(2026, 12, 10)

COMPLETE = {
    "description": "Discharge summaries 2026",
    "discloser": "General Hospital HIM",
    "recipient": "Law office of A. Smith",
    "purpose": "Personal injury claim",
    "expires_on": "2027-06-30",
    "signed_by": "Jane Doe",
    "signed_on": "2026-12-01",
    "revocation_statement": True,
    "conditioning_statement": True,
    "redisclosure_statement": True,
    "form_sha256": "ab" * 32,
}


def test_the_shipped_rules_file_is_valid_and_the_federal_defaults():
    s = load_settings(ROOT / "rules" / "roi.yaml")
    assert s.due.default_days == 30 and s.due.extension_days == 30 and s.due.max_extensions == 1
    assert s.accounting.years == 6
    assert rules.legal_basis(s, "patient", "personal") == "individual_access"


def test_due_date_is_30_days_and_per_requester_type_and_state():
    assert rules.due_date(S, date(2026, 1, 1), "patient") == date(2026, 1, 31)
    s = RoiSettings.model_validate(
        {"due": {"by_requester_type": {"attorney": 10}, "states": {"CA": {"default_days": 15}}}}
    )
    assert rules.due_date(s, date(2026, 1, 1), "attorney") == date(2026, 1, 11)
    assert rules.due_date(s, date(2026, 1, 1), "patient", state="ca") == date(2026, 1, 16)
    assert rules.due_date(s, date(2026, 1, 1), "patient", extensions=1) == date(2026, 3, 2)


def test_one_extension_with_a_reason():
    assert rules.extension_problem(S, 0, "records in off-site storage") is None
    assert "reason" in rules.extension_problem(S, 0, "  ")
    assert "already extended 1 time" in rules.extension_problem(S, 1, "again")


def test_aging_and_overdue():
    assert rules.aging(date(2026, 11, 1), date(2026, 12, 1), TODAY, "in_progress") == {
        "age_days": 39,
        "days_left": -9,
        "overdue": True,
    }
    assert rules.aging(date(2026, 11, 1), date(2026, 12, 1), TODAY, "released")["overdue"] is False


def test_fees_electronic_flat_paper_per_page_none_for_continuity_of_care():
    e = rules.fee(S, delivery="secure_download", purpose="personal", requester_type="patient", pages=80)
    assert e["cents"] == 650 and e["lines"] == ["Electronic copy, flat fee: $6.50"]
    p = rules.fee(S, delivery="mail", purpose="legal", requester_type="attorney", pages=12)
    assert p["cents"] == 12 * 25 and p["items"][0]["label"] == "Paper copy, 12 page(s) at $0.25"
    s = RoiSettings.model_validate(
        {
            "fees": {
                "mail_postage": 5,
                "by_requester_type": {"attorney": {"paper_per_page": 1, "paper_base": 15}},
            }
        }
    )
    a = rules.fee(s, delivery="mail", purpose="legal", requester_type="attorney", pages=10)
    assert a["cents"] == 1500 + 1000 + 500 and [i["cents"] for i in a["items"]] == [1500, 1000, 500]
    free = rules.fee(S, delivery="mail", purpose="continuity_of_care", requester_type="provider", pages=300)
    assert free["cents"] == 0 and free["free"] and free["lines"] == ["No fee (Continuity of care)"]
    est = rules.fee(S, delivery="pickup", purpose="personal", requester_type="patient", pages=None)
    assert "per page" in est["lines"][0] and est["cents"] == 0 and not est["free"]
    assert rules.money(123456) == "$1234.56"


def test_legal_basis_and_when_an_authorization_is_needed():
    assert rules.legal_basis(S, "provider", "continuity_of_care") == "treatment"
    assert rules.legal_basis(S, "provider", "legal") == "authorization"
    assert rules.legal_basis(S, "payer", "payment") == "payment"
    assert rules.legal_basis(S, "court_order", "court") == "court_order"
    assert rules.legal_basis(S, "attorney", "legal") == "authorization"
    assert rules.legal_basis(S, "law_enforcement", "law_enforcement") == "required_by_law"


def test_a_complete_authorization_has_no_problems():
    assert rules.authorization_problems(S, COMPLETE, TODAY) == []


@pytest.mark.parametrize(
    "element,change",
    [
        ("description", {"description": ""}),
        ("discloser", {"discloser": None}),
        ("recipient", {"recipient": " "}),
        ("purpose", {"purpose": ""}),
        ("expiration", {"expires_on": None}),
        ("signature", {"signed_on": None}),
        ("signature", {"signed_by": ""}),
        ("revocation_statement", {"revocation_statement": False}),
        ("conditioning_statement", {"conditioning_statement": False}),
        ("redisclosure_statement", {"redisclosure_statement": False}),
        ("signed_form", {"form_sha256": None}),
        ("representative_authority", {"signed_by_representative": True}),
    ],
)
def test_each_missing_element_is_named(element, change):
    problems = rules.authorization_problems(S, {**COMPLETE, **change}, TODAY)
    assert [p["element"] for p in problems] == [element]
    assert problems[0]["text"] == f"Missing element: {rules.ELEMENTS[element]}"


def test_an_expiry_event_instead_of_a_date():
    auth = {**COMPLETE, "expires_on": None, "expiry_event": "end of the litigation"}
    assert rules.authorization_problems(S, auth, TODAY) == []
    gone = rules.authorization_problems(S, {**auth, "expiry_event_occurred": True}, TODAY)
    assert gone == [{"element": "expiration", "text": "Expired: end of the litigation"}]


def test_expired_and_revoked_authorizations_block():
    assert rules.authorization_problems(S, {**COMPLETE, "expires_on": "2026-12-09"}, TODAY) == [
        {"element": "expiration", "text": "Expired on 2026-12-09"}
    ]
    assert rules.authorization_problems(S, {**COMPLETE, "expires_on": "2026-12-10"}, TODAY) == []
    assert rules.authorization_problems(S, {**COMPLETE, "revoked_on": "2026-12-05"}, TODAY) == [
        {"element": "revocation", "text": "Revoked on 2026-12-05"}
    ]
    assert rules.authorization_problems(S, None, TODAY)[0]["element"] == "authorization"


def test_required_elements_are_configurable():
    s = RoiSettings.model_validate({"authorization": {"required_elements": ["description", "signature"]}})
    assert rules.authorization_problems(s, {"signed_by": "J", "signed_on": "2026-01-01"}, TODAY) == [
        {"element": "description", "text": "Missing element: " + rules.ELEMENTS["description"]}
    ]


def test_identity_checks_per_requester_type():
    assert rules.identity_problems(S, "patient", {"photo_id": True}) == ["Birth date matches the chart"]
    assert rules.identity_problems(S, "court_order", {"court_document": True}) == []


def _d(day: str, basis: str) -> dict:
    return {"disclosed_on": date.fromisoformat(day), "basis": basis}


def test_accounting_leaves_out_the_excluded_bases_and_the_period():
    every = [
        _d("2026-01-05", "treatment"),
        _d("2026-02-05", "court_order"),
        _d("2026-03-05", "individual_access"),
        _d("2026-04-05", "authorization"),
        _d("2026-05-05", "public_health"),
        _d("2020-01-01", "court_order"),
    ]
    got = rules.accountable(S, every, date(2021, 1, 1), TODAY)
    assert [d["basis"] for d in got] == ["court_order", "public_health"]
    s = RoiSettings.model_validate({"accounting": {"exclude_bases": ["treatment"]}})
    assert len(rules.accountable(s, every, date(2021, 1, 1), TODAY)) == 4


def test_the_accounting_period_is_at_most_six_years():
    assert rules.accounting_period(S, None, None, TODAY) == (date(2020, 12, 10), TODAY)
    assert rules.accounting_period(S, date(2020, 12, 10), None, TODAY)[0] == date(2020, 12, 10)
    with pytest.raises(ValueError, match="at most 6 years: from 2020-12-10"):
        rules.accounting_period(S, date(2020, 12, 9), None, TODAY)
    with pytest.raises(ValueError, match="ends before"):
        rules.accounting_period(S, date(2026, 5, 1), date(2026, 4, 1), TODAY)
    assert rules.years_before(date(2028, 2, 29), 6) == date(2022, 2, 28)


def test_a_bad_rules_file_is_reported_with_its_line(tmp_path):
    bad = tmp_path / "roi.yaml"
    bad.write_text(
        "version: 1\ndue:\n  default_days: 0\nfees:\n  free_purposes: [coffee]\n"
        "legal_basis:\n  - {requester_types: [alien], basis: treatment}\naccounting:\n  yeers: 6\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(bad)
    text = "\n".join(exc.value.problems)
    assert f"{bad}:3:" in text and "default_days" in text
    assert f"{bad}:5:" in text and "unknown purpose 'coffee'" in text
    assert f"{bad}:7:" in text and "unknown requester type 'alien'" in text
    assert f"{bad}:9:" in text and "unknown key 'yeers'" in text
    assert rules.check_paths([bad]) == exc.value.problems


def test_interface_check_reads_the_roi_rules(tmp_path, monkeypatch, capsys):
    from interface.ops import cli

    d = tmp_path / "rules"
    d.mkdir()
    (d / "roi.yaml").write_text("version: 1\ndue:\n  extension_days: 400\n")
    assert cli.main(["check", str(d)]) == 1
    assert f"{d / 'roi.yaml'}:3:" in capsys.readouterr().out
