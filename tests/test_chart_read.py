"""Chart reads: search semantics."""

from __future__ import annotations

from interface.mapping.records import Name, Patient
from interface.store import chart, chart_read
from tests.test_chart import adt, apply, vis


def search(engine, **kw):
    with engine.connect() as conn:
        return [p["mrn"] for p in chart_read.search_patients(conn, **kw)]


def test_search_wildcards_are_literal(engine):
    """% and _ in a search are plain characters, not SQL wildcards."""
    apply(engine, adt("A04", "M1", vis("V1"), patient=Patient(name=Name(family="O_Neil"))))
    apply(engine, adt("A04", "M2", vis("V2"), patient=Patient(name=Name(family="OXNeil"))))
    assert search(engine, family="o_") == ["M1"]
    assert search(engine, family="%") == []


def test_search_unicode_names(engine):
    """Accented names are found by their prefix."""
    apply(engine, adt("A04", "M1", vis("V1"), patient=Patient(name=Name(family="Müller", given="José"))))
    assert search(engine, family="Mü", given="Jos") == ["M1"]


def test_search_combines_criteria(engine):
    """All given criteria must match."""
    apply(
        engine,
        adt(
            "A04",
            "M1",
            vis("V1"),
            patient=Patient(name=Name(family="Doe", given="Jane"), birth_date="1980-01-31"),
        ),
    )
    apply(
        engine,
        adt(
            "A04",
            "M2",
            vis("V2"),
            patient=Patient(name=Name(family="Doe", given="Jane"), birth_date="1990-01-31"),
        ),
    )
    assert search(engine, family="doe", given="jane", birth_date="1990") == ["M2"]


def test_history_of_unknown_mrn_is_empty(engine):
    """history() of an unknown MRN is an empty list, get_chart is None."""
    with engine.connect() as conn:
        assert chart_read.history(conn, "X") == [] and chart_read.get_chart(conn, "X") is None
