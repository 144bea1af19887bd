"""The mapping interpreter's fast paths give exactly what its reference interpretation gives.

``Mapping.apply`` runs compiled readers and batches of plain scalars and builds a ``Location``
only when an error needs one; ``Mapping.apply_reference`` reads and locates every field one by
one, as the mapping is written. On every corpus message, every ``tests:`` message of the
mappings, bench-shaped ADT messages and seeded mutations of all of them (nulls, delimiters,
escapes, truncations, line-break styles), both must give equal records, or the same error: type,
code, reason, text and location.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from interface.hl7.errors import HL7Error
from interface.hl7.message import decode, parse, split_messages
from interface.mapping.loader import load_mappings
from interface.ops import bench, bench_workload
from tests.conftest import corpus_files

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = load_mappings(ROOT / "mappings")
PARAMS = [
    {"authority": "HOSP", "id_types": ("MR",), "timezone": "Europe/London"},
    {"authority": "HOSPITAL", "id_types": ["MR"], "timezone": "America/New_York"},
    {"authority": None, "id_types": (), "timezone": None},
]
INSERTS = [
    "|",
    "^",
    "~",
    "\\",
    "&",
    "\r",
    "\n",
    '""',
    "\\E\\",
    "\\F\\",
    "\\X41\\",
    "\\.br\\",
    " ",
    "2023",
    "20231301",
    "+0500",
    "ZZZ|",
    "\rPID|1||X^^^HOSP^MR",
    "\rNK1|1",
    "\rIN1|1|A",
    "\rMRG|1^^^HOSP^MR",
    "\rDG1|1",
    "~^",
    "\r\n",
]
FIELD_VALUES = ['""', "", '""^""', 'x~""', "^", "~", '""~A', "&&", "A&B^C&D~E"]


def _base_messages() -> list[str]:
    out = []
    for path in corpus_files():
        text = decode(path.read_bytes()).text
        try:
            out.extend(split_messages(text))
        except HL7Error:
            out.append(text)
    for m in MAPPINGS.values():
        out.extend(c.text for c in m.tests)
    rng = random.Random(5)
    for i, event in enumerate(["A01", "A04", "A02", "A08", "A03"]):
        out.append(
            bench_workload.adt(
                event,
                f"M{i:05d}",
                f"C{i}",
                1_700_000_000 + 3600 * i,
                visit=f"V{i}",
                klass="IOE"[i % 3],
                location=["4W^401^A", '""', "^^^"][i % 3],
                rng=random.Random(rng.random()),
            )
        )
    return out


def _mutate(text: str, rng: random.Random) -> str:
    s = text
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        p = rng.randrange(len(s) + 1)
        if op < 0.35:
            s = s[:p] + rng.choice(INSERTS) + s[p:]
        elif op < 0.55:
            s = s[:p] + s[p + rng.randint(1, 5) :]
        elif op < 0.8:  # one field's content replaced
            q = s.find("|", p)
            r = s.find("|", q + 1) if q >= 0 else -1
            if r >= 0:
                s = s[: q + 1] + rng.choice(FIELD_VALUES) + s[r:]
        elif op < 0.9:
            s = s[:p]
        else:
            s = s.replace("\r", rng.choice(["\n", "\r\n", "\r \r"]))
    return s


def _messages() -> list[str]:
    base = _base_messages()
    rng = random.Random(20261123)
    return base + [_mutate(t, rng) for t in base for _ in range(20)]


def _outcome(fn, msg, params):
    try:
        return ("ok", fn(msg, params))
    except HL7Error as exc:
        return ("error", type(exc).__name__, exc.code, exc.reason, exc.text, exc.location)


@pytest.mark.parametrize("name", sorted(MAPPINGS))
def test_fast_apply_equals_reference(name):
    mapping = MAPPINGS[name]
    checked = errors = 0
    for text in _messages():
        try:
            msg = parse(text)
        except HL7Error:
            continue
        for params in PARAMS:
            fast = _outcome(mapping.apply, msg, dict(params))
            ref = _outcome(mapping.apply_reference, msg, dict(params))
            assert fast == ref, f"{name}: {text[:80]!r} with {params}"
            checked += 1
            errors += fast[0] == "error"
    assert checked > 1000 and 0 < errors < checked  # both outcomes were exercised
