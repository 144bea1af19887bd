"""``interface test [MAPPING...]``: run the test cases written beside mappings.

Each case gives a message (LF or CR separated), optional params, and either ``expect:`` (a subset
of ``records.to_jsonable(output)``: a dict for the first record, or a list for all of them) or
``expect_error:`` (code, location, reason and/or a piece of the text). Prints one line per case::

    PASS mappings/adt.yaml:301: adt/a01 full admission
    FAIL mappings/adt.yaml:340: adt/a17 bed swap gives two chart updates
      [1].visit.location: expected 'T12S', got 'T11E'

and exits 1 if any case failed (or a mapping did not load).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interface.hl7.errors import ConfigError, HL7Error
from interface.hl7.message import parse
from interface.mapping import records
from interface.mapping.compiler import Case
from interface.mapping.loader import Mapping, load_mapping, load_mappings

DEFAULT_DIRECTORY = "mappings"


@dataclass
class CaseResult:
    file: str
    line: int
    mapping: str
    case: str
    passed: bool
    diff: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.mapping}/{self.case}"

    def summary(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.file}:{self.line}: {self.id}"


def compare(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Differences between an expected subset and actual JSON data, one readable line each.

    Dicts: every expected key must be there with a matching value (other keys are ignored).
    Lists: same length, items compared in order. Scalars: equal, compared as text for numbers
    (YAML reads ``1`` as an int; HL7 values are always text).
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where or '(record)'}: expected an object, got {_show(actual)}"]
        out = []
        for k, v in expected.items():
            key = f"{where}.{k}" if where else str(k)
            if k not in actual:
                out.append(f"{key}: expected {_show(v)}, got nothing")
            else:
                out.extend(compare(v, actual[k], key))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {_show(actual)}"]
        out = []
        if len(expected) != len(actual):
            out.append(f"{where or '(records)'}: expected {len(expected)} item(s), got {len(actual)}")
        for i, (e, a) in enumerate(zip(expected, actual)):
            out.extend(compare(e, a, f"{where}[{i}]"))
        return out
    if expected is None:
        return [] if actual is None else [f"{where}: expected nothing, got {_show(actual)}"]
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        expected = str(expected)
    if expected != actual:
        return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]
    return []


def _show(v: Any) -> str:
    return (
        repr(v)
        if not isinstance(v, (dict, list))
        else ("{...}" if isinstance(v, dict) else f"[{len(v)} items]")
    )


def run_case(mapping: Mapping, case: Case) -> CaseResult:
    """Run one case: apply the mapping and compare with ``expect`` / ``expect_error``."""
    result = CaseResult(mapping.file, case.line, mapping.name, case.name, False)
    params = dict(case.params)
    if isinstance(params.get("id_types"), list):
        params["id_types"] = tuple(params["id_types"])
    try:
        output = mapping.apply(parse(case.text), params)
    except HL7Error as exc:
        if case.expect_error is None:
            result.diff = [
                f"unexpected error {type(exc).__name__} (code {exc.code}) at "
                f"{exc.location or '-'}: {exc.text}"
            ]
            return result
        result.diff = _compare_error(case, exc)
        result.passed = not result.diff
        return result
    if case.expect_error is not None:
        e = case.expect_error
        result.diff = [f"expected error code {e.code} at {e.location}, but the message mapped"]
        return result
    actual = records.to_jsonable(output)
    expected = case.expect
    if isinstance(expected, dict):
        expected, actual = expected, (actual[0] if actual else None)
    result.diff = compare(expected, actual)
    result.passed = not result.diff
    return result


def _compare_error(case: Case, exc: HL7Error) -> list[str]:
    e = case.expect_error
    assert e is not None  # run_case compares an error only for an expect_error: case
    out = []
    if e.code is not None and str(e.code) != exc.code:
        out.append(f"error code: expected {e.code}, got {exc.code} ({exc.text})")
    if e.location is not None and e.location != str(exc.location or ""):
        out.append(f"error location: expected {e.location}, got {exc.location or '-'} ({exc.text})")
    if e.reason is not None and e.reason != exc.reason:
        out.append(f"error reason: expected {e.reason}, got {exc.reason}")
    if e.text is not None and e.text not in exc.text:
        out.append(f"error text: expected it to contain {e.text!r}, got {exc.text!r}")
    return out


def _mappings(paths: list[str] | None) -> list[Mapping]:
    if not paths:
        directory = Path(DEFAULT_DIRECTORY)
        return list(load_mappings(directory).values())
    out: list[Mapping] = []
    problems: list[str] = []
    for p in paths:
        try:
            if Path(p).is_dir():
                out.extend(load_mappings(p).values())
            else:
                out.append(load_mapping(p))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return out


def run_tests(paths: list[str] | None = None) -> list[CaseResult]:
    """Run every case of the given mapping files/directories (default: ``mappings/``).

    Raises ConfigError if a mapping does not load.
    """
    return [run_case(m, c) for m in _mappings(paths) for c in m.tests]


def main(argv: list[str]) -> int:
    """``interface test [MAPPING...]``: print PASS/FAIL per case; 0 if all passed, else 1."""
    try:
        results = run_tests(argv or None)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    for r in results:
        print(r.summary())
        for line in r.diff:
            print(f"    {line}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
