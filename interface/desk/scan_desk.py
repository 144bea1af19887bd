"""The indexing queue's suggestions: which charts might a scanned document be about?

The OCR text is read for labelled names, birth dates and MRNs (``interface.rules.scan_text``);
the charts are then found and scored exactly as the unknown-patient desk does
(:func:`interface.desk.candidates.rank`, ``interface.rules.identity.score``). A chart whose MRN is
printed on the page comes first, with that reason. :func:`page_png` draws one page for the API
and the console alike.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from interface.desk.candidates import rank
from interface.rules import identity, scan_text
from interface.store import scan_intake, scan_pages
from interface.store.content import ContentStore
from interface.store.identity_check import chart_person

SIZES = {"thumb": 36, "view": 110}  # the dpi a page is drawn at: a thumbnail, the page viewer


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


class NoPage(LookupError):
    """The page or its batch's content is not there (the message says which)."""


def page_png(conn: Connection, store: ContentStore, doc: dict, number: int, size: str) -> bytes:
    """Page ``number`` (1-based, as the clerk sees it) of a scanned document as a PNG, at ``size``
    (``thumb`` or ``view``), turned as the clerk turned it: what the API and the console serve."""
    if not 1 <= number <= len(doc["pages"]):
        raise NoPage(f"no page {number}")
    p = doc["pages"][number - 1]
    batch = scan_intake.batch(conn, p["batch"])
    pdf = store.get(conn, batch["pdf_sha256"]) if batch and batch.get("pdf_sha256") else None
    if pdf is None:
        raise NoPage("the page's batch is missing")
    return scan_pages.png(pdf, p["page"], SIZES[size], p.get("rotate", 0))
