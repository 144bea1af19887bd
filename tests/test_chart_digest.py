"""``patients.lists_digest``: a patient's addresses, phones, next of kin, insurance and allergies
resent unchanged are not read back; everything else (charts, history) is exactly as without it."""

from __future__ import annotations

import contextlib
import random
import re

import pytest
from sqlalchemy import event, select, update

from interface.mapping.records import (
    CLEAR,
    Address,
    Allergy,
    Insurance,
    Merge,
    Name,
    NextOfKin,
    Patient,
    Phone,
)
from interface.ops.bench_workload import adt_mix
from interface.store import chart, chart_patient, chart_read
from interface.store import chart_schema as cs
from tests.conftest import _truncate
from tests.test_adt_events import Harness
from tests.test_chart import adt, apply, get, ids, vis

LIST_TABLES = ("patient_addresses", "patient_phones", "next_of_kin", "insurance", "allergies")
_TOUCH = re.compile(
    r"^\s*(SELECT|INSERT|DELETE|UPDATE)\b.*?\b(?:FROM|INTO|UPDATE)\s+\"?("
    + "|".join(LIST_TABLES)
    + r")\"?\b",
    re.S | re.I,
)


@contextlib.contextmanager
def list_statements(engine):
    """(verb, table) of every statement on the five list tables while the block runs."""
    seen: list[tuple[str, str]] = []

    def hook(conn, cursor, statement, *a):
        m = _TOUCH.match(statement)
        if m:
            seen.append((m.group(1).upper(), m.group(2)))

    event.listen(engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", hook)


def digest_text(engine, mrn: str = "M1") -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(cs.patients.c.lists_digest).where(cs.patients.c.mrn == mrn)).scalar_one()


def set_digest(engine, value, mrn: str = "M1") -> None:
    with engine.begin() as conn:
        conn.execute(update(cs.patients).where(cs.patients.c.mrn == mrn).values(lists_digest=value))


def hist(engine, mrn: str = "M1") -> list[dict]:
    with engine.connect() as conn:
        return chart_read.history(conn, mrn)


def list_changes(engine, mrn: str = "M1") -> list[tuple]:
    return [
        (h["message_id"], h["field"], h["action"]) for h in hist(engine, mrn) if h["table"] in LIST_TABLES
    ]


def full(**kw) -> dict:
    """An update's worth of all five lists (keyword overrides replace one)."""
    lists = dict(
        patient=Patient(
            identifiers=ids(("M1", "HOSP", "MR")),
            name=Name(family="Doe"),
            addresses=[Address(street="1 Main St", city="Town", type="H")],
            phones=[Phone(number="555-1", use="PRN"), Phone(number="555-2", use="WPN")],
        ),
        next_of_kin=[NextOfKin(name=Name(family="Doe", given="John"), relationship="SPO")],
        insurance=[Insurance(plan="P1", company="Blue", member_id="X1", group="G1")],
        allergies=[Allergy(code="PCN", description="Penicillin", severity="SV")],
    )
    lists.update(kw)
    return lists


def test_digest_parsing_is_defensive():
    d = {"addresses": "0123456789abcdef", "allergies": "fedcba9876543210"}
    text = chart_patient.format_lists_digest(d)
    assert text == "addresses=0123456789abcdef;allergies=fedcba9876543210"
    assert chart_patient.parse_lists_digest(text) == d
    assert chart_patient.format_lists_digest({}) is None
    for bad in (
        None,
        "",
        42,
        "garbage",
        "addresses=xyz",
        "addresses=0123456789abcdef;",
        "nope=0123456789abcdef",
        "addresses=0123456789ABCDEF",
        "addresses=0123456789abcdef;addresses=0123456789abcdef",
        "addresses=0123456789abcdef0",
    ):
        assert chart_patient.parse_lists_digest(bad) == {}, bad


def test_unchanged_lists_are_not_read_again(engine):
    """A resend of the same five lists: no SELECT, no write, no history on the list tables."""
    with list_statements(engine) as seen:
        apply(engine, adt("A01", visit=vis(), **full()), message_id=1)  # new patient: no read
    assert {v for v, _ in seen} == {"INSERT"}
    stored = chart_patient.parse_lists_digest(digest_text(engine))
    assert set(stored) == {"addresses", "phones", "next_of_kin", "insurance", "allergies"}
    before = get(engine, "M1")
    with list_statements(engine) as seen:
        changes = apply(engine, adt("A08", visit=vis(), **full()), message_id=2)
    assert seen == []
    assert not [c for c in changes if c["table"] in LIST_TABLES]
    assert list_changes(engine) == [
        (1, f, "replace") for f in ("addresses", "phones", "next_of_kin", "insurance", "allergies")
    ]
    after = get(engine, "M1")
    assert {k: v for k, v in after.items() if k not in ("updated_at", "last_event", "visits")} == {
        k: v for k, v in before.items() if k not in ("updated_at", "last_event", "visits")
    }
    assert digest_text(engine) == chart_patient.format_lists_digest(stored)


def test_changed_list_is_replaced_with_history_others_skipped(engine):
    apply(engine, adt("A01", visit=vis(), **full()), message_id=1)
    new_allergies = [
        Allergy(code="PCN", description="Penicillin", severity="SV"),
        Allergy(code="LTX", description="Latex"),
    ]
    with list_statements(engine) as seen:
        changes = apply(engine, adt("A08", **full(allergies=new_allergies)), message_id=2)
    assert seen == [("SELECT", "allergies"), ("DELETE", "allergies"), ("INSERT", "allergies")]
    [ch] = [c for c in changes if c["table"] in LIST_TABLES]
    assert (ch["field"], ch["action"]) == ("allergies", "replace")
    assert [a["code"] for a in ch["old"]] == ["PCN"]
    assert [a["code"] for a in ch["new"]] == ["PCN", "LTX"]
    assert [a["code"] for a in get(engine, "M1")["allergies"]] == ["PCN", "LTX"]
    assert list_changes(engine)[-1] == (2, "allergies", "replace")
    # and back: the old digest is not mistaken for the current state
    apply(engine, adt("A08", **full()), message_id=3)
    assert [a["code"] for a in get(engine, "M1")["allergies"]] == ["PCN"]
    assert list_changes(engine)[-1] == (3, "allergies", "replace")


def test_list_cleared_and_absent_kinds(engine):
    """``""`` (CLEAR) clears the list (history "clear"); a kind absent from the message keeps
    both its rows and its digest; a second clear is skipped."""
    apply(engine, adt("A01", visit=vis(), **full()), message_id=1)
    stored = chart_patient.parse_lists_digest(digest_text(engine))
    apply(
        engine,
        adt("A08", patient=Patient(identifiers=ids(("M1", "HOSP", "MR")), phones=CLEAR), insurance=CLEAR),
        message_id=2,
    )
    c = get(engine, "M1")
    assert c["phones"] == [] and c["insurance"] == []
    assert [a["street"] for a in c["addresses"]] == ["1 Main St"]
    assert [a["code"] for a in c["allergies"]] == ["PCN"]
    assert sorted(list_changes(engine)[-2:]) == [(2, "insurance", "clear"), (2, "phones", "clear")]
    now = chart_patient.parse_lists_digest(digest_text(engine))
    assert now["phones"] != stored["phones"] and now["insurance"] != stored["insurance"]
    assert {k: now[k] for k in ("addresses", "next_of_kin", "allergies")} == {
        k: stored[k] for k in ("addresses", "next_of_kin", "allergies")
    }
    with list_statements(engine) as seen:
        apply(engine, adt("A08", patient=Patient(phones=CLEAR), insurance=[]), message_id=3)
    assert seen == []
    # blank rows count as nothing, like an empty list
    with list_statements(engine) as seen:
        apply(engine, adt("A08", patient=Patient(phones=[Phone()])), message_id=4)
    assert seen == []
    apply(engine, adt("A08", patient=Patient(phones=[Phone(number="555-9")])), message_id=5)
    assert [p["number"] for p in get(engine, "M1")["phones"]] == ["555-9"]


def test_stale_message_leaves_digest_and_lists(engine):
    apply(engine, adt("A01", visit=vis(), at="2026-11-01T10:00:00+00:00", **full()), message_id=1)
    text = digest_text(engine)
    changes = apply(
        engine,
        adt("A08", at="2026-11-01T09:00:00+00:00", **full(allergies=[Allergy(code="OLD")])),
        message_id=2,
    )
    assert any(c["action"] == "ignored_stale" for c in changes)
    assert digest_text(engine) == text
    assert [a["code"] for a in get(engine, "M1")["allergies"]] == ["PCN"]
    # the next current message with the stored list is still skipped, a different one applies
    with list_statements(engine) as seen:
        apply(engine, adt("A08", at="2026-11-01T11:00:00+00:00", **full()), message_id=3)
    assert seen == []
    apply(
        engine,
        adt("A08", at="2026-11-01T12:00:00+00:00", **full(allergies=[Allergy(code="OLD")])),
        message_id=4,
    )
    assert [a["code"] for a in get(engine, "M1")["allergies"]] == ["OLD"]


@pytest.mark.parametrize("stored", [None, "", "garbage", "addresses=zz;phones", "allergies=0123456789abcdef"])
def test_null_or_garbage_digest_reads_the_lists(engine, stored):
    """A patient without a (readable, matching) digest, e.g. from before the migration or written
    by hand: the lists are read and compared as before; a change is never missed."""
    apply(engine, adt("A01", visit=vis(), **full()), message_id=1)
    set_digest(engine, stored)
    with list_statements(engine) as seen:
        changes = apply(engine, adt("A08", **full()), message_id=2)
    assert sorted(t for v, t in seen) == sorted(LIST_TABLES)
    assert {v for v, _ in seen} == {"SELECT"}
    assert not [c for c in changes if c["table"] in LIST_TABLES]
    assert set(chart_patient.parse_lists_digest(digest_text(engine))) == {
        "addresses",
        "phones",
        "next_of_kin",
        "insurance",
        "allergies",
    }
    # rows changed behind the store's back with the digest cleared: the resend restores them
    with engine.begin() as conn:
        conn.execute(cs.allergies.delete())
    set_digest(engine, None)
    apply(engine, adt("A08", **full()), message_id=3)
    assert [a["code"] for a in get(engine, "M1")["allergies"]] == ["PCN"]
    assert list_changes(engine)[-1] == (3, "allergies", "replace")


def merge(event: str, prior: str, survivor: str, **kw):
    return adt(
        event, survivor, merge=Merge(prior_mrn=prior, prior_identifiers=ids((prior, "HOSP", "MR"))), **kw
    )


def _lists(mrn: str, street: str, allergy: str) -> dict:
    return dict(
        patient=Patient(identifiers=ids((mrn, "HOSP", "MR")), addresses=[Address(street=street)]),
        allergies=[Allergy(code=allergy)],
    )


def test_merge_and_rename_keep_lists_right(engine):
    """A40: the survivor's lists are the merge message's; the prior's stay on the tombstone; both
    digests are cleared, so the next messages compare against the rows. A47 keeps the row, its
    lists and its digest under the new MRN."""
    apply(engine, adt("A01", "OLD", vis("V1"), **_lists("OLD", "1 Old St", "PCN")), message_id=1)
    apply(engine, adt("A01", "NEW", vis("V2"), **_lists("NEW", "2 New St", "LTX")), message_id=2)
    apply(engine, merge("A40", "OLD", "NEW", **_lists("NEW", "2 New St", "LTX")), message_id=3)
    assert digest_text(engine, "OLD") is None and digest_text(engine, "NEW") is None
    c = get(engine, "OLD")  # follows the merge
    assert c["mrn"] == "NEW"
    assert [a["street"] for a in c["addresses"]] == ["2 New St"]
    assert [a["code"] for a in c["allergies"]] == ["LTX"]
    # a message for the old MRN with the old lists lands on the survivor and replaces its lists
    apply(engine, adt("A08", "OLD", **_lists("OLD", "1 Old St", "PCN")), message_id=4)
    c = get(engine, "NEW")
    assert [a["street"] for a in c["addresses"]] == ["1 Old St"]
    assert [a["code"] for a in c["allergies"]] == ["PCN"]
    assert (4, "allergies", "replace") in list_changes(engine, "NEW")
    with list_statements(engine) as seen:
        apply(engine, adt("A08", "NEW", **_lists("NEW", "1 Old St", "PCN")), message_id=5)
    assert seen == []

    # A47: rename NEW -> NEWER; the row and its lists and digest go with it
    text = digest_text(engine, "NEW")
    apply(engine, merge("A47", "NEW", "NEWER", **_lists("NEWER", "1 Old St", "PCN")), message_id=6)
    assert digest_text(engine, "NEWER") == text
    assert digest_text(engine, "NEW") is None  # the new tombstone owns no lists
    c = get(engine, "NEWER")
    assert [a["street"] for a in c["addresses"]] == ["1 Old St"]
    assert [a["code"] for a in c["allergies"]] == ["PCN"]
    apply(engine, adt("A08", "NEWER", **_lists("NEWER", "3 Third St", "PCN")), message_id=7)
    assert [a["street"] for a in get(engine, "NEW")["addresses"]] == ["3 Third St"]

    # A40 for an unknown prior: the survivor is upserted, the prior is a pointer
    apply(engine, merge("A40", "GHOST", "NEWER", **_lists("NEWER", "4 Fourth St", "SUL")), message_id=8)
    c = get(engine, "GHOST")
    assert c["mrn"] == "NEWER" and [a["street"] for a in c["addresses"]] == ["4 Fourth St"]
    assert [a["code"] for a in c["allergies"]] == ["SUL"]


# -- equivalence: with and without the digest ---------------------------------------------------


def _disable_digest(monkeypatch) -> None:
    """Every stored digest reads as none: every list is read and compared, as before."""
    monkeypatch.setattr(chart_patient, "parse_lists_digest", lambda text: {})


def _snapshot(engine, mrns) -> dict:
    with engine.connect() as conn:
        return {m: (chart_read.get_chart(conn, m), chart_read.history(conn, m)) for m in sorted(mrns)}


def _story(seed: int) -> list:
    """A random sequence of ADT updates for a few patients: lists resent, changed, cleared,
    absent, stale messages, merges and MRN changes."""
    rng = random.Random(seed)
    mrns = ["A", "B", "C", "D"]
    streets = ["1 Main St", "2 High St", "3 Low Rd"]
    out = []
    minute = 0

    def maybe(values):
        r = rng.random()
        if r < 0.15:
            return None
        if r < 0.22:
            return CLEAR
        return values

    for i in range(90):
        minute += 1
        m = minute - (30 if rng.random() < 0.1 else 0)  # now and then a stale message
        at = f"2026-11-01T{8 + m // 60:02d}:{m % 60:02d}:00+00:00"
        mrn = rng.choice(mrns)
        r = rng.random()
        if r < 0.06 and len(mrns) > 1:
            prior, survivor = rng.sample(mrns, 2)
            out.append(
                merge(
                    "A40",
                    prior,
                    survivor,
                    at=at,
                    patient=Patient(
                        identifiers=ids((survivor, "HOSP", "MR")),
                        addresses=maybe([Address(street=rng.choice(streets))]),
                    ),
                )
            )
            continue
        if r < 0.09:
            new = f"R{i}"
            out.append(merge("A47", mrn, new, at=at, patient=Patient(identifiers=ids((new, "HOSP", "MR")))))
            mrns[mrns.index(mrn)] = new
            continue
        patient = Patient(
            identifiers=ids((mrn, "HOSP", "MR")),
            name=Name(family=rng.choice(["Doe", "Roe"])),
            addresses=maybe([Address(street=s, type="H") for s in rng.sample(streets, rng.randint(0, 2))]),
            phones=maybe(
                [Phone(number=rng.choice(["555-1", "555-2"]), use="PRN")]
                + ([Phone()] if rng.random() < 0.2 else [])
            ),
        )
        out.append(
            adt(
                rng.choice(["A01", "A08", "A08", "A31"]),
                mrn,
                vis(f"V{mrn}"),
                at=at,
                patient=patient,
                next_of_kin=maybe([NextOfKin(name=Name(family="Doe", given=rng.choice(["J", "K"])))]),
                insurance=maybe([Insurance(plan=rng.choice(["P1", "P2"]))]),
                allergies=maybe(
                    [Allergy(code=c) for c in rng.sample(["PCN", "LTX", "SUL"], rng.randint(0, 2))]
                ),
            )
        )
    return out


def _apply_story(engine, updates) -> set[str]:
    mrns = set()
    for n, upd in enumerate(updates, 1):
        try:
            apply(engine, upd, message_id=n)
        except chart.PermanentError:
            pass  # e.g. a merge of a patient already merged elsewhere: rolled back either way
        mrns.add(upd.mrn)
        if upd.merge is not None:
            mrns.add(upd.merge.prior_mrn)
    return mrns


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_charts_and_history_with_and_without_digest(engine, monkeypatch, seed):
    updates = _story(seed)
    mrns = _apply_story(engine, updates)
    with_digest = _snapshot(engine, mrns)
    _truncate(engine)
    with monkeypatch.context() as m:
        _disable_digest(m)
        _apply_story(engine, updates)
        without = _snapshot(engine, mrns)
    assert with_digest == without
    # the story did exercise the lists (merges move the prior's lists to the survivor)
    actions = {h["action"] for _, hs in with_digest.values() for h in hs if h["table"] in LIST_TABLES}
    assert actions == {"replace", "clear", "move"}


def test_end_to_end_same_results_with_and_without_digest(engine, monkeypatch):
    """sample_messages/adt (merges, an MRN change; sent twice, as a resend), the bench's ADT mix
    (the lists resent with every message) and a few list changes, through the real channel and
    mapping: the same charts and history both ways."""
    from tests.test_adt_events import ROOT, pv1
    from tests.test_adt_events import adt as hl7

    samples = [f.read_bytes() for f in sorted((ROOT / "sample_messages" / "adt").glob("*.hl7"))]
    wl = adt_mix(120, 4, "E", seed=3)
    frames = samples + [_new_control_id(f) for f in samples]
    frames += [f[1:-2] for conn in wl.per_conn for _, f in conn]
    frames += [
        hl7("A08", "M100", time="20260301100000", extra=("AL1|1|DA|^PENICILLIN|SV|HIVES",)),
        hl7(
            "A01",
            "M100",
            time="20260301110000",
            pv1_=pv1(),
            extra=("AL1|1|DA|^PENICILLIN|SV|HIVES", "AL1|2|DA|^LATEX|MI|RASH"),
        ),
        hl7("A08", "M100", time="20260301090000", extra=("AL1|1|DA|^SULFA|SV|HIVES",)),
        hl7(
            "A08",
            "M100",
            time="20260301120000",
            address="9 ELM ST^^TOWN^IL^1^USA^H",
            extra=("AL1|1|DA|^LATEX|MI|RASH",),
        ),
        hl7(
            "A08",
            "M100",
            time="20260301130000",
            address="9 ELM ST^^TOWN^IL^1^USA^H",
            extra=("AL1|1|DA|^LATEX|MI|RASH",),
        ),
    ]

    def run() -> dict:
        h = Harness(engine)
        for f in frames:
            assert h.send(f).status == "accepted"
        h.drain()
        assert h.items("error") == []
        return _snapshot(engine, _all_mrns(engine))

    with_digest = run()
    assert len(with_digest) >= 20
    _truncate(engine)
    with monkeypatch.context() as m:
        _disable_digest(m)
        without = run()
    assert with_digest == without
    allergies = [h for h in with_digest["M100"][1] if h["table"] == "allergies"]
    assert [a["action"] for a in allergies] == ["replace", "replace", "replace"]


def _new_control_id(frame: bytes) -> bytes:
    """The same message resent under another control id (MSH-10), so it is not a duplicate."""
    msh, sep, rest = frame.partition(b"\r")
    fields = msh.split(b"|")
    fields[9] += b"-R"
    return b"|".join(fields) + sep + rest


def _all_mrns(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(cs.patients.c.mrn)).scalars())
