"""Merges (A40, A34, A39) and MRN changes (A47) in the chart store."""

from __future__ import annotations

import sys
import types

import pytest

from interface.mapping.records import Identifier, Merge, Name, Patient
from interface.store import chart, chart_read
from tests.test_chart import adt, apply, failure, get, ids, vis


def merge(event: str, prior: str, survivor: str, **kw):
    """A merge/MRN-change update: MRG-1 ``prior`` -> PID-3 ``survivor``."""
    return adt(
        event, survivor, merge=Merge(prior_mrn=prior, prior_identifiers=ids((prior, "HOSP", "MR"))), **kw
    )


def resolve(engine, mrn):
    with engine.connect() as conn:
        return chart.resolve_mrn(conn, mrn)


def hist(engine, mrn):
    with engine.connect() as conn:
        return chart_read.history(conn, mrn)


@pytest.fixture
def documents(monkeypatch):
    """A stand-in for interface.store.documents recording reassignments."""
    calls: list[tuple[str, str]] = []
    fake = types.ModuleType("interface.store.documents")
    fake.reassign_patient = lambda conn, a, b, now: calls.append((a, b))
    monkeypatch.setitem(sys.modules, "interface.store.documents", fake)
    read = types.ModuleType("interface.store.document_read")
    read.summaries_for = lambda conn, mrn: [{"document_number": "D-" + mrn}]
    monkeypatch.setitem(sys.modules, "interface.store.document_read", read)
    return calls


def test_a40_moves_visits_identifiers_names_and_history(engine, documents):
    """A40 merges MRG-1 into PID-3: the prior's visits, identifiers, other names, history and
    documents move to the survivor; the prior points at it."""
    apply(
        engine,
        adt(
            "A01",
            "OLD",
            vis("V1"),
            patient=Patient(
                identifiers=ids(("OLD", "HOSP", "MR"), ("111", "NHS", "NH")),
                name=Name(family="Doe"),
                other_names=[Name(family="Roe", type="M")],
            ),
        ),
    )
    apply(
        engine,
        adt(
            "A04",
            "NEW",
            vis("V2"),
            patient=Patient(identifiers=ids(("NEW", "HOSP", "MR")), name=Name(family="Doe", given="Jane")),
        ),
    )
    apply(
        engine,
        merge(
            "A40",
            "OLD",
            "NEW",
            patient=Patient(identifiers=ids(("NEW", "HOSP", "MR")), name=Name(family="Doe", given="Jane")),
        ),
    )
    c = get(engine, "NEW")
    assert sorted(v["visit_number"] for v in c["visits"]) == ["V1", "V2"]
    assert {i["value"] for i in c["identifiers"]} == {"NEW", "OLD", "111"}
    assert [n["family"] for n in c["other_names"]] == ["Roe"]
    assert c["merged_from"] == ["OLD"] and c["merged_into"] is None
    assert documents == [("OLD", "NEW")]
    assert c["documents"] == [{"document_number": "D-NEW"}]
    assert resolve(engine, "OLD") == "NEW"
    # history of both patients is now the survivor's
    h = hist(engine, "NEW")
    assert any(x["mrn"] == "OLD" and x["action"] == "create" for x in h)
    assert any(x["action"] == "merge" and x["new"] == "NEW" for x in h)
    assert hist(engine, "OLD") == h


def test_merged_away_mrn_answers_with_survivor_chart(engine):
    """get_chart for a merged-away MRN returns the survivor's chart and says so."""
    apply(engine, adt("A04", "OLD", vis("V1")), adt("A04", "NEW", vis("V2")))
    apply(engine, merge("A40", "OLD", "NEW"))
    c = get(engine, "OLD")
    assert c["mrn"] == "NEW" and c["requested_mrn"] == "OLD" and c["merged_into"] == "NEW"


def test_resolve_follows_chains(engine):
    """A merged into B, B merged into C: A resolves to C; unknown resolves to None."""
    apply(engine, adt("A04", "A", vis("VA")), adt("A04", "B", vis("VB")), adt("A04", "C", vis("VC")))
    apply(engine, merge("A40", "A", "B"))
    apply(engine, merge("A40", "B", "C"))
    assert resolve(engine, "A") == "C" and resolve(engine, "B") == "C"
    assert resolve(engine, "C") == "C" and resolve(engine, "Z") is None
    c = get(engine, "A")
    assert sorted(v["visit_number"] for v in c["visits"]) == ["VA", "VB", "VC"]
    assert sorted(c["merged_from"]) == ["A", "B"]


def test_updates_to_merged_away_mrn_apply_to_survivor(engine):
    """An A08 for a merged-away MRN changes the survivor; no new patient appears."""
    apply(engine, adt("A04", "OLD", vis("V1")), adt("A04", "NEW", vis("V2")))
    apply(engine, merge("A40", "OLD", "NEW"))
    changes = apply(engine, adt("A08", "OLD", patient=Patient(name=Name(family="Late"))))
    assert get(engine, "NEW")["name"]["family"] == "Late"
    assert changes[0]["action"] == "redirect"
    apply(engine, adt("A03", "OLD", vis("V1")))
    v1 = [v for v in get(engine, "NEW")["visits"] if v["visit_number"] == "V1"][0]
    assert v1["status"] == "discharged"


def test_merge_into_itself_is_merge_conflict(engine):
    """MRG-1 equal to PID-3 is a merge_conflict at MRG-1."""
    apply(engine, adt("A04", "M1", vis()))
    err = failure(engine, merge("A40", "M1", "M1"))
    assert err.reason == "merge_conflict" and str(err.location) == "MRG-1"


def test_merge_of_prior_already_merged_elsewhere_is_conflict(engine):
    """A prior MRN already merged into another patient cannot be merged again: merge_conflict."""
    apply(engine, adt("A04", "A", vis("VA")), adt("A04", "B", vis("VB")), adt("A04", "C", vis("VC")))
    apply(engine, merge("A40", "A", "B"))
    assert failure(engine, merge("A40", "A", "C")).reason == "merge_conflict"


def test_reverse_merge_is_conflict(engine):
    """Merging the survivor back into its merged-away MRN is a merge_conflict, not a cycle."""
    apply(engine, adt("A04", "A", vis("VA")), adt("A04", "B", vis("VB")))
    apply(engine, merge("A40", "A", "B"))
    assert failure(engine, merge("A40", "B", "A")).reason == "merge_conflict"
    assert resolve(engine, "A") == "B"


def test_merge_resend_is_harmless(engine):
    """The same A40 applied twice leaves the merge as it was."""
    apply(engine, adt("A04", "OLD", vis("V1")), adt("A04", "NEW", vis("V2")))
    apply(engine, merge("A40", "OLD", "NEW"))
    changes = apply(engine, merge("A40", "OLD", "NEW"), message_id=2)
    assert [c["action"] for c in changes] == ["already_merged"]
    assert resolve(engine, "OLD") == "NEW"


def test_merge_with_unknown_prior_leaves_pointer(engine, monkeypatch):
    """A merge whose prior MRN is unknown creates/updates the survivor and makes the prior MRN
    point at it (so late messages for it land on the survivor); held items of both are released."""
    import interface.store.workqueue as queue

    released = []
    monkeypatch.setattr(queue, "release_held", lambda conn, mrn, now: released.append(mrn), raising=False)
    apply(engine, merge("A40", "GHOST", "NEW", patient=Patient(name=Name(family="Doe"))))
    assert get(engine, "NEW")["name"]["family"] == "Doe"
    assert resolve(engine, "GHOST") == "NEW"
    assert set(released) == {"NEW", "GHOST"}


def test_merge_without_prior_mrn_is_missing_field(engine):
    """A merge with no MRG-1 is missing_field at MRG-1."""
    err = failure(engine, adt("A40", "NEW", merge=Merge()))
    assert err.reason == "missing_field" and str(err.location) == "MRG-1"


def test_merge_prior_from_identifiers_when_mapping_picked_none(engine):
    """Without prior_mrn, the first MRG-1 identifier is the prior MRN."""
    apply(engine, adt("A04", "OLD", vis("V1")))
    apply(engine, adt("A40", "NEW", merge=Merge(prior_identifiers=[Identifier(value="OLD")])))
    assert resolve(engine, "OLD") == "NEW"


@pytest.mark.parametrize("event", ["A34", "A39"])
def test_a34_a39_merge_like_a40(engine, event):
    """A34 (patient id only) and A39 (person) merge the prior MRN into the survivor."""
    apply(engine, adt("A04", "OLD", vis("V1")), adt("A04", "NEW", vis("V2")))
    apply(engine, merge(event, "OLD", "NEW"))
    assert resolve(engine, "OLD") == "NEW"
    assert len(get(engine, "NEW")["visits"]) == 2


def test_a40_same_visit_number_keeps_survivors_visit(engine):
    """When both patients have the same visit number the survivor's stays and the prior's is kept
    on the merged-away record (noted in history) rather than duplicated."""
    apply(engine, adt("A04", "OLD", vis("V1", location="X")), adt("A04", "NEW", vis("V1", location="Y")))
    changes = apply(engine, merge("A40", "OLD", "NEW"))
    assert [v["location"] for v in get(engine, "NEW")["visits"]] == ["Y"]
    assert any(c["action"] == "kept_on_prior" for c in changes)


def test_a47_changes_mrn(engine, documents):
    """A47 renames the patient: chart and visits under the new MRN, the old MRN identifier gone,
    the old MRN resolving to the new one, documents reassigned."""
    apply(
        engine,
        adt(
            "A01",
            "OLD",
            vis("V1"),
            patient=Patient(
                identifiers=ids(("OLD", "HOSP", "MR"), ("111", "NHS", "NH")), name=Name(family="Doe")
            ),
        ),
    )
    apply(engine, merge("A47", "OLD", "NEW", patient=Patient(identifiers=ids(("NEW", "HOSP", "MR")))))
    c = get(engine, "NEW")
    assert c["name"]["family"] == "Doe" and [v["visit_number"] for v in c["visits"]] == ["V1"]
    assert {i["value"] for i in c["identifiers"]} == {"NEW", "111"}
    assert resolve(engine, "OLD") == "NEW"
    assert documents == [("OLD", "NEW")]
    assert any(h["action"] == "rename" for h in hist(engine, "NEW"))


def test_a47_to_existing_mrn_is_merge_conflict(engine):
    """A47 to an MRN that already exists must be a merge instead: merge_conflict at PID-3."""
    apply(engine, adt("A04", "OLD", vis("V1")), adt("A04", "NEW", vis("V2")))
    err = failure(engine, merge("A47", "OLD", "NEW"))
    assert err.reason == "merge_conflict" and str(err.location) == "PID-3"


def test_a47_resend_is_harmless(engine):
    """Applying the same A47 twice leaves the rename as it was."""
    apply(engine, adt("A04", "OLD", vis("V1")))
    apply(engine, merge("A47", "OLD", "NEW"))
    apply(engine, merge("A47", "OLD", "NEW"), message_id=2)
    assert resolve(engine, "OLD") == "NEW" and get(engine, "NEW")["visits"][0]["visit_number"] == "V1"
