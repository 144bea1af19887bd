"""What the searches on a chart's lists (Encounter, Coverage, AllergyIntolerance, Condition)
share: the patient a search is limited to, and the Patients ``_include`` brings."""

from __future__ import annotations

from fastapi import Request

from interface.store import chart_pages
from interface.store.chart import resolve_mrn
from interface.web.fhir import access, patient


def patient_param(p: dict) -> str | None:
    """``patient`` / ``subject`` (``Patient/MRN`` or the MRN), or None."""
    asked = p.get("patient") or p.get("subject") or p.get("beneficiary")
    if asked and asked.startswith("Patient/"):
        asked = asked[len("Patient/") :]
    return asked or None


def patients_asked(request: Request, conn, p: dict) -> list[int] | None:
    """The patient ids a search is limited to: the patient asked for (a merged-away MRN: the
    survivor), within the token's patient; None: any patient; ``[]``: none."""
    asked = patient_param(p)
    if asked:
        asked = resolve_mrn(conn, asked) or ""
    mrn = access.narrow(request, conn, asked)
    if mrn is None:
        return None
    return list(chart_pages.patient_ids(conn, [mrn]).values()) if mrn else []


def include_patients(request: Request, conn, rows: list[dict]) -> list:
    """The Patients of the rows (``_include=<type>:patient``), each once."""
    return patient.by_mrn(request, conn, [r["mrn"] for r in rows])
