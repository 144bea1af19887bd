"""``GET /fhir/Encounter/{id}`` and ``GET /fhir/Encounter?...``: the chart's visits (PV1/PV2)
as FHIR Encounters, after the v2-to-FHIR IG's PV1 map. The id is the visit's row id (stable
through merges, which move the visit); the visit number (PV1-19) is the identifier."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fhir.resources.R4B.encounter import Encounter
from sqlalchemy import and_, func, or_

from interface.store import chart_pages
from interface.store import chart_schema as cs
from interface.web.fhir import access, common, lists, model
from interface.web.fhir.common import FhirError
from interface.web.fhir.identifiers import system_for
from interface.web.reading import reading

router = APIRouter()

V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_NULL = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# The chart's visit state -> Encounter.status
STATUS = {
    "preadmit": "planned",
    "admitted": "in-progress",
    "registered": "in-progress",
    "discharged": "finished",
    "cancelled": "cancelled",
}
# PV1-2 patient class (table 0004, as mappings/tables/patient_class.yaml words it) -> v3 ActCode
# (the IG's PatientClass concept map); classes with no ActCode read as v3-NullFlavor UNK
CLASS = {
    "emergency": ("EMER", "emergency"),
    "inpatient": ("IMP", "inpatient encounter"),
    "outpatient": ("AMB", "ambulatory"),
    "preadmit": ("PRENC", "pre-admission"),
    "recurring": ("AMB", "ambulatory"),
    "obstetrics": ("IMP", "inpatient encounter"),
}
TABLES = {
    "hospital_service": "http://terminology.hl7.org/CodeSystem/v2-0069",
    "admit_source": "http://terminology.hl7.org/CodeSystem/v2-0023",
    "admission_type": "http://terminology.hl7.org/CodeSystem/v2-0007",
    "discharge_disposition": "http://terminology.hl7.org/CodeSystem/v2-0112",
}
SEARCH = {"_id", "patient", "subject", "status", "date", "identifier"}


def _coded(field: str, value: str | None) -> dict | None:
    return {"coding": [{"system": TABLES[field], "code": value}]} if value else None


def location_text(value: str | None) -> str | None:
    """``point^room^bed^facility`` as text: the parts that are there, joined by ``/``."""
    parts = [p for p in (value or "").split("^") if p]
    return " / ".join(parts) or None


def _participant(code: str, display: str, person: dict | None) -> dict | None:
    if not person:
        return None
    name = " ".join(x for x in (person.get("given"), person.get("family")) if x) or None
    ident = {"value": person["id"]} if person.get("id") else None
    if not (name or ident):
        return None
    individual = {"display": name, "identifier": ident}
    return {
        "type": [{"coding": [{"system": V3_PARTICIPATION, "code": code, "display": display}]}],
        "individual": {k: v for k, v in individual.items() if v},
    }


def _person(v: dict, prefix: str) -> dict | None:
    out = {k: v.get(prefix + k) for k in ("id", "family", "given")}
    return out if any(out.values()) else None


def build(request: Request, v: dict) -> Encounter:
    """The Encounter of a visits row (with ``mrn`` and ``locations``)."""
    code, display = CLASS.get((v.get("class") or "").lower(), (None, None))
    klass = (
        {"system": V3_ACT, "code": code, "display": display} if code else {"system": V3_NULL, "code": "UNK"}
    )
    start = common.instant(v.get("admitted_at") or v.get("expected_admit_at"))
    end = common.instant(v.get("discharged_at")) if v.get("status") == "discharged" else None
    period = {k: x for k, x in (("start", start), ("end", end)) if x}
    locations = []
    for loc in v.get("locations") or []:
        if loc.get("cancelled_at"):
            continue  # an A12 cancelled the transfer: the patient never was there
        span = {
            k: x
            for k, x in (("start", common.instant(loc.get("from"))), ("end", common.instant(loc.get("to"))))
            if x
        }
        entry: dict[str, Any] = {
            "location": {"display": location_text(loc["location"]) or loc["location"]},
            "status": "completed" if loc.get("to") else "active",
        }
        if span:
            entry["period"] = span
        locations.append(entry)
    if not locations and v.get("location"):
        locations.append({"location": {"display": location_text(v["location"])}, "status": "active"})
    identifier = None
    if v.get("visit_number"):
        identifier = [
            {
                "use": "official",
                "type": {"coding": [{"system": V2_0203, "code": "VN"}]},
                "system": system_for(request, v.get("visit_authority")),
                "value": v["visit_number"],
            }
        ]
    participants = [
        p
        for p in (
            _participant("ATND", "attender", _person(v, "attending_")),
            _participant("REF", "referrer", _person(v, "referring_")),
        )
        if p
    ]
    hospitalization = {
        k: x
        for k, x in (
            ("admitSource", _coded("admit_source", v.get("admit_source"))),
            ("dischargeDisposition", _coded("discharge_disposition", v.get("discharge_disposition"))),
        )
        if x
    }
    return model.make(
        Encounter,
        id=str(v["id"]),
        meta=common.meta(v),
        identifier=identifier,
        status=STATUS.get(v.get("status") or "", "unknown"),
        class_fhir=klass,
        type=[t for t in [_coded("admission_type", v.get("admission_type"))] if t] or None,
        serviceType=_coded("hospital_service", v.get("hospital_service")),
        subject={"reference": f"Patient/{v['mrn']}"},
        participant=participants or None,
        period=period or None,
        hospitalization=hospitalization or None,
        location=locations or None,
    )


def _date_conditions(compares: list[tuple[str, str]]) -> list:
    """Encounter ``date``: the visit's period (admit .. discharge, open while not discharged)
    overlaps the value's span, compared on the stored ISO text."""
    v = cs.visits
    start = func.coalesce(v.c.admitted_at, v.c.expected_admit_at)
    end = v.c.discharged_at
    out = []
    for op, value in compares:
        top = chart_pages.after(value)
        open_end = or_(end.is_(None), v.c.status != "discharged")
        if op == "eq":
            out.append(and_(start < top, or_(open_end, end >= value)))
        elif op == "ge":
            out.append(or_(open_end, end >= value))
        elif op in ("gt", "sa"):
            out.append(or_(open_end, end >= top))
        elif op == "le":
            out.append(start < top)
        elif op in ("lt", "eb"):
            out.append(start < value)
        else:  # ne: the period does not touch the value
            out.append(or_(start >= top, and_(~open_end, end < value)))
    return out


@router.get("/fhir/Encounter/{id}")
def read_encounter(id: str, request: Request):
    with reading(request) as conn:
        rows = chart_pages.list_rows(conn, cs.visits, ids=[int(id)], count=1)[1] if id.isdigit() else []
        if rows:
            access.check_patient(request, conn, rows[0]["mrn"], f"Encounter/{id}")
            chart_pages.visit_extras(conn, rows)
    if not rows:
        raise FhirError(404, f"Encounter/{id} is not known")
    access.audit(request, "view", "encounter", id, [rows[0]["mrn"]])
    return common.read(request, build(request, rows[0]))


@router.get("/fhir/Encounter")
def search_encounters(request: Request):
    """Encounters by patient (``Patient/MRN`` or the MRN; a merged-away MRN finds the survivor's),
    status, date (the period overlaps; prefixes eq ne ge le gt lt sa eb), identifier (the visit
    number), _id, _lastUpdated; newest first; ``_include=Encounter:patient``."""
    p = common.params(request, SEARCH)
    count, offset = common.paging(p)
    dates = common.date_compares("date", common.values(request, "date"))
    updated = common.last_updated(request)
    include = common.includes(request, "Encounter")
    status = p.get("status")
    if status and status not in set(STATUS.values()) | {"unknown"}:
        raise FhirError(400, "status must be one of " + ", ".join(sorted(set(STATUS.values()))))
    if not any(p.get(k) for k in SEARCH) and not updated:
        raise FhirError(400, "give at least one of " + ", ".join(sorted(SEARCH | {"_lastUpdated"})))
    v = cs.visits
    where = _date_conditions(dates)
    if status:
        where.append(v.c.status.in_([k for k, s in STATUS.items() if s == status] or ["-"]))
    system = None
    if p.get("identifier"):
        system, value = common.token_param(p["identifier"])
        where.append(v.c.visit_number == value)
    if p.get("_id"):
        where.append(v.c.id == (int(p["_id"]) if p["_id"].isdigit() else -1))
    checked = p.get("identifier") and system is not None  # the system is checked on the rows
    with reading(request) as conn:
        patient_ids = lists.patients_asked(request, conn, p)
        total, rows = chart_pages.list_rows(
            conn,
            v,
            patient_ids=patient_ids,
            where=where,
            updated=updated,
            count=common.MAX_MATCHES if checked else count,
            offset=0 if checked else offset,
        )
        if checked:
            rows = [r for r in rows if (system_for(request, r.get("visit_authority")) or "") == system]
            total, rows = len(rows), rows[offset : offset + count]
        chart_pages.visit_extras(conn, rows)
        included = lists.include_patients(request, conn, rows) if include else []
    page = [build(request, r) for r in rows]
    access.audit(request, "search", "encounter", None, [r["mrn"] for r in rows])
    return common.searchset(request, "Encounter", page, total, count, offset, included=included)
