"""The chart's other lists as FHIR, after the v2-to-FHIR IG's segment maps: insurance (IN1) as
Coverage, allergies (AL1) as AllergyIntolerance, diagnoses (DG1) as Condition. Read by id (the
row id) and searched by patient (``patient``; Coverage also ``beneficiary``), ``_id``,
``_lastUpdated``, with ``_include=<type>:patient``.

A message that changes a list replaces the list's rows (the feed sends the whole list, with no
key per item), so these ids last as long as the list is unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Request
from fhir.resources.R4B.allergyintolerance import AllergyIntolerance
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.resource import Resource

from interface.store import chart_pages
from interface.store import chart_schema as cs
from interface.web.fhir import access, common, lists, model
from interface.web.fhir.common import FhirError
from interface.web.reading import reading

COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
SUBSCRIBER = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
# IN1-17 (table 0063) -> subscriber-relationship (the IG's concept map; the rest: other)
RELATIONSHIP = {
    "SEL": "self",
    "SPO": "spouse",
    "CHD": "child",
    "DOM": "common",
    "EME": "other",
    "FTH": "parent",
    "MTH": "parent",
    "PAR": "parent",
}
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
# AL1-2 allergen type (table 0127) -> category
ALLERGY_CATEGORY = {
    "DA": "medication",
    "FA": "food",
    "EA": "environment",
    "AA": "environment",
    "PA": "environment",
    "LA": "environment",
}
# AL1-4 severity (table 0128) -> reaction.severity, criticality
SEVERITY = {"SV": "severe", "MO": "moderate", "MI": "mild"}
CRITICALITY = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}
V2_0127 = "http://terminology.hl7.org/CodeSystem/v2-0127"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
V2_0052 = "http://terminology.hl7.org/CodeSystem/v2-0052"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
# DG1-6 diagnosis type (table 0052) -> verificationStatus
DIAGNOSIS_VERIFICATION = {"F": "confirmed", "W": "provisional", "A": "provisional"}
# DG1-3.3 / DG1-2 coding system (table 0396) -> the FHIR system URI
CODING_SYSTEMS = {
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9": "http://hl7.org/fhir/sid/icd-9-cm",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
}


def _name(n: dict) -> str | None:
    return " ".join(x for x in (n.get("given"), n.get("family")) if x) or None


def coverage(request: Request, r: dict) -> Coverage:
    classes = []
    if r.get("plan"):
        classes.append({"type": {"coding": [{"system": COVERAGE_CLASS, "code": "plan"}]}, "value": r["plan"]})
    if r.get("group_number"):
        group = {
            "type": {"coding": [{"system": COVERAGE_CLASS, "code": "group"}]},
            "value": r["group_number"],
        }
        if r.get("group_name"):
            group["name"] = r["group_name"]
        classes.append(group)
    payor: dict[str, Any] = {"display": r.get("company") or r.get("company_id") or "unknown insurer"}
    if r.get("company_id"):
        payor["identifier"] = {"value": r["company_id"]}
    relation = (r.get("relationship") or "").upper()
    period = {k: common.date_of(r.get(c)) for k, c in (("start", "effective"), ("end", "expiration"))}
    insured = _name({k: r.get("insured_" + k) for k in ("family", "given")})
    return model.make(
        Coverage,
        id=str(r["id"]),
        meta=common.meta(r),
        status="active",
        subscriberId=r.get("member_id"),
        subscriber={"display": insured} if insured and relation != "SEL" else None,
        beneficiary={"reference": f"Patient/{r['mrn']}"},
        relationship={"coding": [{"system": SUBSCRIBER, "code": RELATIONSHIP.get(relation, "other")}]}
        if relation
        else None,
        period={k: v for k, v in period.items() if v} or None,
        payor=[payor],
        class_fhir=classes or None,
        order=int(r["priority"]) if (r.get("priority") or "").isdigit() and int(r["priority"]) > 0 else None,
    )


def allergy(request: Request, r: dict) -> AllergyIntolerance:
    severity = (r.get("severity") or "").upper()
    code: dict[str, Any] = {}
    if r.get("code"):
        code["coding"] = [{k: v for k, v in (("code", r["code"]), ("display", r.get("description"))) if v}]
    if r.get("description"):
        code["text"] = r["description"]
    reaction = None
    if r.get("reaction"):
        reaction = [{"manifestation": [{"text": r["reaction"]}], "severity": SEVERITY.get(severity)}]
    category = ALLERGY_CATEGORY.get((r.get("type") or "").upper())
    return model.make(
        AllergyIntolerance,
        id=str(r["id"]),
        meta=common.meta(r),
        clinicalStatus={"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
        type="allergy" if (r.get("type") or "").upper() in ALLERGY_CATEGORY else None,
        category=[category] if category else None,
        criticality=CRITICALITY.get(severity),
        code=code or None,
        patient={"reference": f"Patient/{r['mrn']}"},
        onsetDateTime=common.date_of(r.get("identified")),
        reaction=reaction,
    )


def condition(request: Request, r: dict) -> Condition:
    kind = (r.get("type") or "").upper()
    system = CODING_SYSTEMS.get((r.get("coding_system") or "").upper().replace("-", ""))
    coding = {
        k: v for k, v in (("system", system), ("code", r.get("code")), ("display", r.get("description"))) if v
    }
    category = [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}]
    if kind:
        category.append({"coding": [{"system": V2_0052, "code": kind}]})
    verification = DIAGNOSIS_VERIFICATION.get(kind)
    onset = r.get("at")
    return model.make(
        Condition,
        id=str(r["id"]),
        meta=common.meta(r),
        verificationStatus={"coding": [{"system": VERIFICATION, "code": verification}]}
        if verification
        else None,
        category=category,
        code={"coding": [coding], "text": r.get("description")} if r.get("code") else None,
        subject={"reference": f"Patient/{r['mrn']}"},
        encounter={"reference": f"Encounter/{r['visit_id']}"} if r.get("visit_id") else None,
        onsetDateTime=(common.instant(onset) if "T" in (onset or "") else common.date_of(onset)),
    )


# type -> (table, builder, audit target type, search parameters besides _id and _lastUpdated)
KINDS: dict[str, tuple[Any, Callable[[Request, dict], Resource], str, set[str]]] = {
    "Coverage": (cs.insurance, coverage, "coverage", {"patient", "beneficiary"}),
    "AllergyIntolerance": (cs.allergies, allergy, "allergy", {"patient"}),
    "Condition": (cs.diagnoses, condition, "condition", {"patient", "subject"}),
}


def router_for(type_name: str) -> APIRouter:
    """The read and search routes of one type."""
    router = APIRouter()
    table, builder, target, search = KINDS[type_name]
    allowed = search | {"_id"}

    def read_one(id: str, request: Request):
        with reading(request) as conn:
            rows = chart_pages.list_rows(conn, table, ids=[int(id)], count=1)[1] if id.isdigit() else []
            if rows:
                access.check_patient(request, conn, rows[0]["mrn"], f"{type_name}/{id}")
        if not rows:
            raise FhirError(404, f"{type_name}/{id} is not known")
        access.audit(request, "view", target, id, [rows[0]["mrn"]])
        return common.read(request, builder(request, rows[0]))

    def search_many(request: Request):
        p = common.params(request, allowed)
        count, offset = common.paging(p)
        updated = common.last_updated(request)
        include = common.includes(request, type_name)
        if not any(p.get(k) for k in allowed) and not updated:
            raise FhirError(400, "give at least one of " + ", ".join(sorted(allowed | {"_lastUpdated"})))
        where = []
        if p.get("_id"):
            where.append(table.c.id == (int(p["_id"]) if p["_id"].isdigit() else -1))
        with reading(request) as conn:
            ids = lists.patients_asked(request, conn, p)
            total, rows = chart_pages.list_rows(
                conn, table, patient_ids=ids, where=where, updated=updated, count=count, offset=offset
            )
            included = lists.include_patients(request, conn, rows) if include else []
        page = [builder(request, r) for r in rows]
        access.audit(request, "search", target, None, [r["mrn"] for r in rows])
        return common.searchset(request, type_name, page, total, count, offset, included=included)

    read_one.__doc__ = f"One {type_name} by id, with ``ETag``; 404 OperationOutcome when unknown."
    search_many.__doc__ = f"{type_name} by {', '.join(sorted(allowed))}, _lastUpdated; newest first."
    router.add_api_route(f"/fhir/{type_name}/{{id}}", read_one, methods=["GET"], name=f"read_{target}")
    router.add_api_route(f"/fhir/{type_name}", search_many, methods=["GET"], name=f"search_{target}")
    return router
