"""Every ``tests:`` case written beside a mapping in ``mappings/`` is a pytest case (id
``mapping:case``), and ``interface test`` runs them and says what differs when one fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from interface.mapping import testing
from interface.mapping.loader import load_mappings
from interface.ops import cli

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = load_mappings(ROOT / "mappings")
CASES = [(m, c) for m in MAPPINGS.values() for c in m.tests]


@pytest.mark.parametrize("mapping,case", CASES, ids=[f"{m.name}:{c.name}" for m, c in CASES])
def test_mapping_case(mapping, case):
    result = testing.run_case(mapping, case)
    assert result.passed, f"{result.summary()}\n" + "\n".join(result.diff)


def test_every_mapping_has_cases():
    """Each mapping in mappings/ carries tests (adt and mdm at least)."""
    assert {"adt", "mdm"} <= set(MAPPINGS)
    for m in MAPPINGS.values():
        assert m.tests, f"{m.file} has no tests:"


BROKEN = """\
name: broken
root: chart
fields:
  - to: event
    from: MSH-9.2
  - to: mrn
    mrn: PID-3
    required: true
  - to: patient.birth_date
    from: PID-7
    transform: date
tests:
  - name: wrong birth date expected
    params: {authority: HOSP}
    message: |
      MSH|^~\\&|A|B|||20240101||ADT^A08|1|P|2.5.1
      PID|1||77^^^HOSP^MR||DOE^J||19800131
    expect:
      mrn: "77"
      patient: {birth_date: "1980-01-30", sex: female}
  - name: error expected but the message maps
    message: |
      MSH|^~\\&|A|B|||20240101||ADT^A08|2|P|2.5.1
      PID|1||77^^^^MR
    expect_error: {code: "101", location: PID-3}
  - name: passes
    params: {authority: HOSP}
    message: |
      MSH|^~\\&|A|B|||20240101||ADT^A08|3|P|2.5.1
      PID|1||77^^^HOSP^MR||DOE^J||19800131
    expect: {mrn: "77", patient: {birth_date: "1980-01-31"}}
"""


def test_interface_test_reports_each_difference(tmp_path, capsys):
    """A failing case prints FAIL with file:line and one line per difference; exit 1."""
    f = tmp_path / "broken.yaml"
    f.write_text(BROKEN)
    code = cli.main(["test", str(f)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAIL {f}:13: broken/wrong birth date expected" in out
    assert "patient.birth_date: expected '1980-01-30', got '1980-01-31'" in out
    assert "patient.sex: expected 'female', got nothing" in out
    assert f"FAIL {f}:21: broken/error expected but the message maps" in out
    assert "expected error code 101 at PID-3, but the message mapped" in out
    assert f"PASS {f}:26: broken/passes" in out
    assert out.rstrip().endswith("1 passed, 2 failed")


def test_interface_test_passes_on_the_shipped_mappings(capsys, monkeypatch):
    """``interface test`` with no argument runs mappings/ and exits 0."""
    monkeypatch.chdir(ROOT)
    assert cli.main(["test"]) == 0
    out = capsys.readouterr().out
    assert f"{len(CASES)} passed, 0 failed" in out


def test_mapping_that_does_not_load_is_reported_with_its_line(tmp_path, capsys):
    """A bad path in a mapping: ``file:line: message`` and exit 1, no case run."""
    f = tmp_path / "bad.yaml"
    f.write_text(BROKEN.replace("from: PID-7", "from: PID-7[CX-5]"))
    code = cli.main(["test", str(f)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{f}:10:" in out and "PID-7[CX-5]" in out
    assert "PASS" not in out and "FAIL" not in out
