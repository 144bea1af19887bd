"""Code-table meanings beside coded values (issue 19, item 4): the HL7 tables as data
(``interface.rules.hl7_tables``), a site's own tables over them (``rules/code_tables.yaml``,
``interface.rules.code_tables``), the pure lookup (``interface.desk.code_meanings``) and the
message viewer showing ``F — Female`` (seeded by the real engine: tests/test_pages.py)."""

from __future__ import annotations

import re

import pytest

from interface.desk import code_meanings as cm
from interface.hl7.errors import ConfigError
from interface.ops.cli import check_config
from interface.rules import code_tables, hl7_tables, words

from .test_pages import admin, app, seeded  # noqa: F401


def pairs(meanings) -> list[tuple[str, str, str]]:
    return [(m.where, m.code, m.meaning) for m in meanings]


def test_a_coded_field_reads_its_table_and_an_unknown_code_has_no_meaning():
    assert pairs(cm.field_meanings("PID", 8, "F")) == [("PID-8", "F", "Female")]
    assert pairs(cm.field_meanings("PID", 8, "f")) == [("PID-8", "f", "Female")]  # upper-cased
    assert cm.field_meanings("PID", 8, "Q") == []  # never guessed: shown as it is
    assert cm.field_meanings("PID", 8, "") == []
    assert cm.field_meanings("PID", 7, "19840312") == []  # not a coded field
    assert pairs(cm.field_meanings("PV1", 2, "I")) == [("PV1-2", "I", "Inpatient")]
    assert pairs(cm.field_meanings("PV1", 4, "E")) == [("PV1-4", "E", "Emergency")]
    assert pairs(cm.field_meanings("TXA", 17, "LA")) == [("TXA-17", "LA", "Legally authenticated")]
    assert pairs(cm.field_meanings("OBX", 11, "F")) == [("OBX-11", "F", "Final result")]
    assert cm.field_meanings("OBX", 2, "TX")[0].table == "0125"
    assert cm.field_meanings("EVN", 4, "01")[0].table_name == "Event Reason"


def test_components_and_repetitions():
    # MSH-9: the message type (0076) and the trigger event (0003), each its own component
    assert pairs(cm.field_meanings("MSH", 9, "ADT^A40^ADT_A39")) == [
        ("MSH-9.1", "ADT", "ADT message"),
        ("MSH-9.2", "A40", "Merge patient - patient identifier list"),
    ]
    # a coded element (CE): the code is the first component of every repetition
    race = "2106-3^White^CDCREC~2028-9^Asian^CDCREC~9999-9^Local^L"
    assert pairs(cm.field_meanings("PID", 10, race)) == [
        ("PID-10", "2106-3", "White"),
        ("PID-10", "2028-9", "Asian"),
    ]
    # other delimiters (MSH-2 says which)
    assert pairs(cm.field_meanings("MSH", 9, "MDM*T02", component="*")) == [
        ("MSH-9.1", "MDM", "Medical document management"),
        ("MSH-9.2", "T02", "Original document notification and content"),
    ]


def test_masked_fields_show_no_meaning_until_revealed():
    segs = [
        {
            "name": "PID",
            "fields": [
                {"number": 8, "value": "•••", "masked": True, "repsep": "~", "compsep": "^"},
                {"number": 10, "value": "2106-3", "masked": False, "repsep": "~", "compsep": "^"},
            ],
        }
    ]
    out = cm.annotate(segs)
    assert out[0]["fields"][0]["meanings"] == []
    assert pairs(out[0]["fields"][1]["meanings"]) == [("PID-10", "2106-3", "White")]


def test_words_read_the_same_hl7_tables():
    assert words.word("0001", "F") == "Female" and words.word("sex", "f") == "Female"
    assert words.TABLES["0270"] is hl7_tables.TABLES["0270"]
    assert words.word("0085", "P") == "Preliminary result"
    for field, table in hl7_tables.FIELDS.items():  # every mapped table has values and a name
        assert hl7_tables.TABLES[table] and hl7_tables.NAMES[table], field


SITE = """\
version: 1
tables:
  "0004":
    values:
      K: Day case
  "0069":
    name: Hospital Service
    values: {MED: Medical service}
  ZL01:
    name: Ward kind
    values: {A: Acute, R: Rehabilitation}
fields:
  PV1-10: "0069"
  ZPV-2: ZL01
"""


def test_a_site_adds_values_and_tables(tmp_path):
    f = tmp_path / "code_tables.yaml"
    f.write_text(SITE)
    t = code_tables.default_tables(f)
    assert pairs(cm.field_meanings("PV1", 2, "K", tables=t)) == [("PV1-2", "K", "Day case")]
    assert pairs(cm.field_meanings("PV1", 2, "I", tables=t)) == [("PV1-2", "I", "Inpatient")]  # kept
    assert pairs(cm.field_meanings("PV1", 10, "MED", tables=t)) == [("PV1-10", "MED", "Medical service")]
    m = cm.field_meanings("ZPV", 2, "R", tables=t)[0]
    assert (m.meaning, m.table, m.table_name) == ("Rehabilitation", "ZL01", "Ward kind")
    assert cm.field_meanings("PV1", 2, "K") == []  # the HL7 tables themselves are untouched
    assert code_tables.default_tables(tmp_path / "none.yaml") is code_tables.BUILTIN
    f.write_text(SITE.replace("Day case", "Day surgery"))  # re-read when it changes
    import os

    os.utime(f, ns=(1, 1))
    assert cm.meaning(code_tables.default_tables(f), "0004", "K") == "Day surgery"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("version: 1\ntables:\n  0001:\n    values: {X: Other}\n", ":3:"),  # 0001 unquoted: a number
        ('version: 1\ntables:\n  "ZZ9":\n    values: {X: Y}\n', "give it a name"),
        ('version: 1\nfields:\n  PV1-10: "0069"\n', "names table '0069', which has no values"),
        ('version: 1\nfields:\n  pv1-10: "0004"\n', "SEG-n"),
        ('version: 1\ntables:\n  "0004":\n    values: {}\n', ":4:"),
        ('version: 1\ntables:\n  "0004":\n    value: {K: Day}\n', "value"),
    ],
)
def test_problems_in_a_site_file_say_file_and_line(tmp_path, text, problem):
    rules = tmp_path / "rules"
    rules.mkdir()
    f = rules / "code_tables.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        code_tables.load_site_tables(f)
    assert any(problem in p and p.startswith(str(f)) for p in exc.value.problems), exc.value.problems
    assert any(problem in p for p in check_config([str(rules)]))  # interface check reads it too


def test_the_shipped_site_file_is_valid():
    assert check_config(["rules/code_tables.yaml"]) == []


def test_the_viewer_shows_meanings_beside_coded_values(admin, seeded, tmp_path):  # noqa: F811
    page = admin.get(f"/messages/{seeded.messages['bad']}").text

    def cell(field: str) -> str:
        row = re.search(rf'<tr id="{field}"[^>]*>(.*?)</tr>', page, re.S)
        assert row, field
        return re.sub(r"\s+", " ", row.group(1))

    assert "ADT — ADT message" in cell("MSH-9") and "A08 — Update patient information" in cell("MSH-9")
    assert "O — Outpatient" in cell("PV1-2")
    assert "P — Production" in cell("MSH-11")
    assert 'title="PV1-2: code table 0004 (Patient Class)"' in cell("PV1-2")
    assert "F — Female" in cell("PID-8")  # PID-8 is not masked: the meaning is shown

    # the site's file (re-read when it changes) re-words a value
    f = tmp_path / "code_tables.yaml"
    f.write_text('version: 1\ntables:\n  "0004":\n    values: {O: Outpatient clinic}\n')
    admin.app.state.code_tables_file = f
    page = admin.get(f"/messages/{seeded.messages['bad']}").text
    assert "O — Outpatient clinic" in cell("PV1-2")
