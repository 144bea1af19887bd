"""``interface deficiencies``: the completeness worklist from a terminal (table or JSON), with
filters, overdue findings appearing on time, and findings clearing when a later message fixes
the document."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

from interface.ops import cli
from interface.store.deficiencies import cli_main
from tests.test_adt_events import Harness, adt

NOW_SIGNED = "1234^SMITH^JOHN^^^^^^^^^^^^20261120095500"


def mdm(
    event: str,
    number: str,
    *,
    mrn: str = "100001",
    status: str = "DI",
    author: str = "",
    auth: str = "",
    type_: str = "HP",
    time: str = "20261120100000",
) -> str:
    txa = [
        "TXA",
        "1",
        type_,
        "TX",
        "20261120090000",
        "",
        "20261120091500",
        "",
        "",
        author,
        "",
        "",
        number,
        "",
        "",
        "",
        "",
        status,
        "U",
        "AV",
        "AC",
        "",
        auth,
    ]
    return (
        "\r".join(
            [
                f"MSH|^~\\&|DOCS|HOSP|IF|HOSP|{time}||MDM^{event}|{number}{event}{time}|P|2.5.1",
                f"EVN|{event}|{time}",
                f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE",
                "PV1|1|I|4W||||||||||||||||V1^^^HOSP^VN",
                "|".join(txa),
                "OBX|1|TX|HP||Report text||||||F",
            ]
        )
        + "\r"
    )


@pytest.fixture
def h(engine) -> Harness:
    h = Harness(engine)
    h.send(adt("A28", "100001"))
    h.send(adt("A28", "100002"))
    h.send(mdm("T02", "D-NOAUTH"), "mdm")  # no author: author_present at once
    h.send(mdm("T02", "D-SIGNED-NOWHO", status="AU", author="1234^SMITH^JOHN"), "mdm")  # no TXA-22
    h.send(
        mdm(
            "T02",
            "D-OK",
            mrn="100002",
            status="AU",
            author="77^BROWN^ANN",
            type_="DS",
            auth="77^BROWN^ANN^^^^^^^^^^^^20261120095500",
        ),
        "mdm",
    )
    h.send(mdm("T02", "D-UNSIGNED", mrn="100002", author="77^BROWN^ANN", type_="DS"), "mdm")
    h.drain()
    assert h.items("error") == [] and h.items("held") == []
    return h


def run(h: Harness, *argv: str, days: float = 0) -> tuple[int, str]:
    out = io.StringIO()
    code = cli_main(list(argv), h.db, now=h.now + timedelta(days=days), out=out)
    return code, out.getvalue()


def findings(h: Harness, *argv: str, days: float = 0) -> set[tuple[str, str]]:
    code, text = run(h, "--json", *argv, days=days)
    assert code == 0
    return {(r["document_number"], r["rule"]) for r in json.loads(text)}


def test_json_worklist_and_filters(h):
    assert findings(h) == {("D-NOAUTH", "author_present"), ("D-SIGNED-NOWHO", "signed_needs_signer")}
    assert findings(h, "--mrn", "100002") == set()
    assert findings(h, "--type", "hp") == findings(h)
    assert findings(h, "--author", "SMITH") == {("D-SIGNED-NOWHO", "signed_needs_signer")}
    code, text = run(h, "--json", "--mrn", "100001")
    row = next(r for r in json.loads(text) if r["document_number"] == "D-SIGNED-NOWHO")
    assert row["message"].startswith("An authenticated document must name who signed it")
    assert "authenticator (TXA-22)" in row["message"] and row["status"] == "AU"


def test_overdue_appears_after_the_rule_delay(h):
    """unsigned_overdue (14 days from origination): not before, listed after, with its age."""
    assert ("D-UNSIGNED", "unsigned_overdue") not in findings(h, days=10)
    code, text = run(h, "--json", "--author", "77", days=30)
    rows = json.loads(text)
    assert [(r["document_number"], r["rule"]) for r in rows] == [("D-UNSIGNED", "unsigned_overdue")]
    assert rows[0]["overdue_days"] >= 15


def test_table_output(h):
    code, text = run(h)
    lines = text.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "DOCUMENT",
        "MRN",
        "TYPE",
        "STATUS",
        "RULE",
        "ID",
        "RESPONSIBLE",
        "AGE",
        "FINDING",
    ]
    assert any(
        line.startswith("D-NOAUTH") and "author_present" in line and "missing author (TXA-9)" in line
        for line in lines[1:]
    )
    code, text = run(h, "--mrn", "100002")
    assert (code, text) == (0, "no deficiencies\n")


def test_findings_clear_when_a_later_message_fixes_them(h):
    """A T03 naming the author clears author_present; a T03 with TXA-22 clears the signer
    finding; signing clears the overdue one."""
    h.send(mdm("T03", "D-NOAUTH", author="1234^SMITH^JOHN", time="20261120110000"), "mdm")
    h.send(
        mdm(
            "T03",
            "D-SIGNED-NOWHO",
            status="AU",
            author="1234^SMITH^JOHN",
            auth=NOW_SIGNED,
            time="20261120110000",
        ),
        "mdm",
    )
    h.send(
        mdm(
            "T03",
            "D-UNSIGNED",
            mrn="100002",
            status="LA",
            author="77^BROWN^ANN",
            type_="DS",
            auth="77^BROWN^ANN^^^^^^^^^^^^20261120105500",
            time="20261120110000",
        ),
        "mdm",
    )
    h.drain()
    assert h.items("error") == []
    assert findings(h, days=30) == {("D-NOAUTH", "unsigned_overdue")}


def test_merged_away_mrn_lists_the_survivors_findings(h):
    h.send(adt("A40", "100002", time="20260302100000", mrg="100001"))
    h.drain()
    assert (
        findings(h, "--mrn", "100001")
        == findings(h, "--mrn", "100002")
        == {("D-NOAUTH", "author_present"), ("D-SIGNED-NOWHO", "signed_needs_signer")}
    )


def test_interface_deficiencies_command(h, db_url, capsys, monkeypatch):
    """``interface deficiencies --db URL --json`` prints the same worklist (at the harness's
    time: the wall clock would age the findings past their deadlines)."""
    import functools

    from interface.store import deficiencies

    monkeypatch.delenv("INTERFACE_DB_URL", raising=False)
    monkeypatch.setattr(deficiencies, "cli_main", functools.partial(deficiencies.cli_main, now=h.now))
    assert cli.main(["deficiencies", "--db", db_url, "--json", "--mrn", "100001"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["document_number"], r["rule"]) for r in rows} == {
        ("D-NOAUTH", "author_present"),
        ("D-SIGNED-NOWHO", "signed_needs_signer"),
    }


def test_waive_from_the_cli_needs_a_reason_and_is_audited(h, capsys):
    """`interface deficiencies --waive ID --reason R --user U`: the finding leaves the open list,
    shows under --status waived, and the audit trail names who and why; without a reason, or for
    an unknown id, it says so and exits 1."""
    from sqlalchemy import select

    from interface.store.schema import audit

    code, text = run(h, "--json")
    target = next(r for r in json.loads(text) if r["rule"] == "author_present")
    assert run(h, "--waive", str(target["id"]))[0] == 1
    assert "reason is required" in capsys.readouterr().err
    assert run(h, "--waive", "999999999", "--reason", "x")[0] == 1
    code, text = run(
        h, "--waive", str(target["id"]), "--reason", "outside record, author unknown", "--user", "carl"
    )
    assert code == 0 and "waived" in text
    assert ("D-NOAUTH", "author_present") not in findings(h)
    assert ("D-NOAUTH", "author_present") in findings(h, "--status", "waived")
    with h.db.connect() as conn:
        row = conn.execute(select(audit).where(audit.c.action == "waive_deficiency")).mappings().one()
    assert row["user"] == "carl" and row["reason"] == "outside record, author unknown"
