"""The indexing queue's suggestions: which charts might a scanned document be about?

The OCR text is read for labelled names, birth dates and MRNs (``interface.rules.scan_text``);
the charts are then found and scored exactly as the unknown-patient desk does
(:func:`interface.desk.candidates.rank`, ``interface.rules.identity.score``). A chart whose MRN is
printed on the page comes first, with that reason.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from interface.desk.candidates import rank
from interface.rules import identity, scan_text
from interface.store.identity_check import chart_person


def suggestions(conn: Connection, text: str | None, *, limit: int = 5) -> list[dict]:
    """``[{mrn, family, given, birth_date, sex, score, reasons}]``, best first."""
    found = scan_text.read(text or "")
    out = rank(conn, found.person, limit=limit)
    for mrn in reversed(found.mrns):
        chart = chart_person(conn, mrn)
        if chart is None or chart.mrn is None:
            continue
        value, reasons = identity.score(found.person, chart)
        out = [c for c in out if c["mrn"] != chart.mrn]
        out.insert(
            0,
            {
                "mrn": chart.mrn,
                "family": chart.family,
                "given": chart.given,
                "birth_date": chart.birth_date,
                "sex": chart.sex,
                "score": max(value, 50),
                "reasons": ["MRN printed on the page"] + reasons,
            },
        )
    return out[:limit]
