"""rules/identity.py: normalisation, compare, score, the YAML loader (file:line) and its tests,
``interface check`` on rules/identity.yaml, and the CLI's identity actions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from interface.hl7.errors import ConfigError
from interface.hl7.message import parse
from interface.ops import cli
from interface.rules import identity as I
from interface.rules.identity import Person as P
from tests.test_adt_events import ROOT, run
from tests.test_identity_desk import CHEN, RIVERA, mismatch
from tests.test_identity_engine import adt, doc, harness, mdm


def verdicts(diffs):
    return {d.field: d.verdict for d in diffs}


def test_normalisation():
    assert I.norm_name("  O'Brien-Núñez ") == "obrien nunez"
    assert I.norm_date("1984-03-12") == I.norm_date("19840312083000") == "19840312"
    assert I.norm_date("garbage") == ""
    assert I.norm_sex("F") == I.norm_sex("female") == "F" and I.norm_sex("U") == I.norm_sex("unknown") == ""
    assert I.last4("999-00-1234") == "1234" and I.last4("12") == ""
    assert I.norm_phone("+1 (217) 555-0142") == I.norm_phone("5550142")


@pytest.mark.parametrize(
    "value",
    [
        "Chen",
        "CHEN",
        "van der Berg",
        "O'Brien",
        "Smith-Jones",
        "a_b/c.d,e",
        "  x  y ",
        "Ab1",
        "Ab\tc",
        "Straße",
        "Núñez",
        "ǅemal",
        "İlker",
        "ﬁona",
        "MÜLLER",
        "x\u0301",
        "",
        "A.",
        "-",
        "日本",
    ],
)
def test_norm_name_ascii_shortcut_agrees_with_the_full_normalisation(value):
    assert I.norm_name(value) == I._norm_name_reference(value)


def test_compare_lets_a_corrected_spelling_through_and_holds_another_person():
    chart = P("RIVERA", "ANA", "MARIA", "1984-03-12", "female")
    assert not I.blocking(I.compare(P("RIVERA", "ANNA", birth_date="19840312", sex="F"), chart))
    assert verdicts(I.compare(P("RIVIERA", "ANA"), chart)) == {"family": "tolerated"}
    assert I.compare(P("Rivera", "Ana"), chart) == []  # case
    assert verdicts(I.compare(P("RIVERA", "ANA MARIA"), chart)) == {"given": "tolerated"}  # first given name
    other = I.compare(P("DOE", "JANE", birth_date="19800115", sex="F"), chart)
    assert verdicts(other) == {"family": "mismatch", "given": "mismatch", "birth_date": "mismatch"}
    assert all("DOE" not in d.why and "RIVERA" not in d.why for d in other)  # words, not values


def test_compare_name_order_and_fields_one_side_lacks():
    swapped = I.compare(P("ANA", "RIVERA"), P("RIVERA", "ANA"))
    assert verdicts(swapped) == {"family": "tolerated"} and "order" in swapped[0].why
    assert I.compare(P("RIVERA", "ANA"), P("RIVERA", "ANA", birth_date="1984-03-12", ssn="123")) == []
    assert I.compare(P(birth_date="1984"), P(birth_date="1984-03-12")) == []  # to the shorter precision
    assert verdicts(I.compare(P(sex="M"), P(sex="female"))) == {"sex": "mismatch"}
    assert verdicts(I.compare(P(ssn="111-22-3333"), P(ssn="111223334"))) == {"ssn_last4": "mismatch"}
    assert verdicts(I.compare(P(phones=["2175550000"]), P(phones=["2175550142"]))) == {"phone": "noted"}
    assert I.compare(P(phones=["2175550142"]), P(phones=["x", "+1 217 555 0142"])) == []


def test_channel_rules_override_the_default():
    rules = I.IdentityRules.model_validate(
        {"channels": {"lab": {"birth_date": {"check": "similar", "max_edits": 1, "min_similarity": 80}}}}
    )
    m, c = P(birth_date="19840321"), P(birth_date="1984-03-12")
    assert verdicts(I.compare(m, c, rules.for_channel("lab"))) == {"birth_date": "tolerated"}
    assert verdicts(I.compare(m, c, rules.for_channel("other"))) == {"birth_date": "mismatch"}


def test_score_ranks_and_explains():
    msg = P("RIVERA", "ANNA", birth_date="19840312", sex="F", phones=["2175550142"])
    best, why = I.score(msg, P("RIVERA", "ANA", birth_date="1984-03-12", sex="female", phones=["5550142"]))
    worse, _ = I.score(msg, P("RIVERS", "ANDREW", birth_date="1984-03-12", sex="male"))
    none, _ = I.score(msg, P("CHEN", "WEI", birth_date="1957-11-02", sex="male"))
    assert best > worse > none and best >= 90
    assert "birth date: same" in why and "phone: a number in common" in why
    assert I.score(P("RIVERA"), P("RIVERA"))[0] < 60  # a name alone is a thin match


def test_person_from_message():
    msg = parse(
        "MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5.1\r"
        "PID|1||M1^^^HOSP^MR~999-00-1234^^^SSA^SS||SMITH^AL^^^^^A~RIVERA^ANA^MARIA^^^^L||19840312|F|||"
        "12 ELM^^SPRINGFIELD^IL^62704||^PRN^PH^^1^217^5550142\r"
    )
    p = I.person_from_message(msg)
    assert (p.family, p.given, p.middle, p.birth_date, p.sex) == ("RIVERA", "ANA", "MARIA", "19840312", "F")
    assert (p.ssn, p.mrn, p.phones) == ("999-00-1234", "M1", ["12175550142"])
    assert p.address == "12 ELM  SPRINGFIELD IL 62704"


def test_the_shipped_rules_load_and_their_tests_hold():
    rules = I.load_rules(ROOT / "rules" / "identity.yaml")
    assert len(rules.tests) >= 6 and rules.for_channel("adt").family.check == "note"


BAD = """\
version: 1
default:
  family: {check: sometimes}
  given: {max_edit: 2}
tests:
  - name: wrong expectation
    message: {family: DOE}
    chart: {family: RIVERA}
    expect: file
"""

WRONG_TEST = """\
version: 1
tests:
  - name: wrong expectation
    message: {family: DOE}
    chart: {family: RIVERA}
    expect: file
"""


def test_problems_are_reported_with_file_and_line(tmp_path, capsys):
    f = tmp_path / "rules" / "identity.yaml"
    f.parent.mkdir()
    f.write_text(BAD)
    with pytest.raises(ConfigError) as exc:
        I.load_rules(f)
    assert [p.split(":")[1] for p in exc.value.problems] == ["3", "4"]
    assert "unknown key 'max_edit'" in exc.value.problems[1]
    f.write_text(WRONG_TEST)
    assert cli.main(["check", str(f.parent)]) == 1
    out = capsys.readouterr().out
    assert f"{f}:6: test 'wrong expectation': expected file, got mismatch (mismatched: family)" in out


def test_interface_check_checks_the_identity_rules(capsys):
    assert cli.main(["check", str(ROOT / "rules")]) == 0


def _cli(db_url, *argv) -> int:
    return cli.main(
        ["errors", *argv, "--db", db_url, "--user", "clerk1", "--channels", str(ROOT / "channels")]
    )


def test_cli_file_anyway_candidates_and_file(engine, db_url, capsys):
    h, item = mismatch(engine)
    assert _cli(db_url, "file-anyway", str(item.id)) == 1
    assert "reason is required" in capsys.readouterr().err
    assert _cli(db_url, "file-anyway", str(item.id), "--reason", "ward confirmed") == 0
    h.now = datetime.now(timezone.utc) + timedelta(minutes=1)  # the CLI acts at the wall clock
    h.drain()
    assert doc(h, "D1")["mrn"] == "M100"
    h.send(mdm("D2", "N9", name="CHEN^WEI", dob="19571102", sex="M"), "mdm")
    h.drain()
    (held,) = h.items("held")
    capsys.readouterr()
    assert _cli(db_url, "candidates", str(held.id)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[1] == "M200" and "birth date: same" in lines[0]
    assert _cli(db_url, "file", str(held.id)) == 1
    assert "--mrn" in capsys.readouterr().err
    assert _cli(db_url, "file", str(held.id), "--mrn", "M200") == 0
    h.now = datetime.now(timezone.utc) + timedelta(minutes=2)
    h.drain()
    assert doc(h, "D2")["mrn"] == "M200"


def test_cli_send_back(engine, db_url, capsys):
    h, item = mismatch(engine)
    assert _cli(db_url, "send-back", str(item.id), "--reason", "not our patient") == 0
    assert [i.id for i in h.items("discarded")] == [item.id]
