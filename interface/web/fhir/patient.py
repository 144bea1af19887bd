"""``GET /fhir/Patient/{id}`` and ``GET /fhir/Patient?...``: the chart as a FHIR Patient.

The id is the MRN. A merged-away MRN reads as an inactive Patient linked ``replaced-by`` the
survivor; the survivor links ``replaces`` each merged-in MRN. Identifiers the chart masks
(``interface.desk.masking.chart``: national id, identifiers other than the MRN) are left out.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fhir.resources.R4B.patient import Patient

from interface.desk import masking
from interface.store import chart_read
from interface.web import auth
from interface.web.fhir import common
from interface.web.fhir.common import FhirError
from interface.web.fhir.identifiers import system_for
from interface.web.reading import reading

router = APIRouter()

# The chart's sex (HL7 table 0001 as mappings/tables/administrative_sex.yaml words it, or the
# code itself) -> administrative-gender (the v2-to-FHIR concept map: A, N -> other)
GENDER = {
    **{"f": "female", "m": "male", "o": "other", "a": "other", "n": "other", "u": "unknown", "x": "other"},
    **{"female": "female", "male": "male", "other": "other", "unknown": "unknown"},
    **{"ambiguous": "other", "not_applicable": "other", "non_binary": "other"},
}
# HL7 table 0200 name type -> NameUse
NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous", "B": "old"}
# HL7 table 0190 address type -> AddressUse / AddressType
ADDRESS_USE = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "billing", "P": "home"}
ADDRESS_TYPE = {"M": "postal"}
# HL7 tables 0201 (use) and 0202 (equipment) -> ContactPoint use / system
PHONE_USE = {"PRN": "home", "ORN": "home", "VHN": "temp", "WPN": "work", "EMR": "temp"}
PHONE_SYSTEM = {
    "PH": "phone",
    "CP": "phone",
    "FX": "fax",
    "BP": "pager",
    "Internet": "email",
    "X.400": "email",
}
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SEARCH = {"identifier", "family", "given", "name", "birthdate", "gender", "_id"}


def _name(n: dict | None) -> dict | None:
    if not n or not (n.get("family") or n.get("given")):
        return None
    given = [g for g in (n.get("given"), n.get("middle")) if g]
    out: dict[str, Any] = {"family": n.get("family"), "given": given or None}
    if n.get("prefix"):
        out["prefix"] = [n["prefix"]]
    suffix = [s for s in (n.get("suffix"), n.get("degree")) if s]
    if suffix:
        out["suffix"] = suffix
    if NAME_USE.get(n.get("type") or ""):
        out["use"] = NAME_USE[n["type"]]
    return out


def _address(a: dict) -> dict | None:
    line = [x for x in (a.get("street"), a.get("other")) if x]
    out = {
        "line": line or None,
        "city": a.get("city"),
        "state": a.get("state"),
        "postalCode": a.get("postal_code"),
        "country": a.get("country"),
        "use": ADDRESS_USE.get(a.get("type") or ""),
        "type": ADDRESS_TYPE.get(a.get("type") or ""),
    }
    return out if any(out[k] for k in ("line", "city", "state", "postalCode", "country")) else None


def _telecom(ph: dict) -> list[dict]:
    out = []
    use = PHONE_USE.get(ph.get("use") or "")
    if ph.get("equipment") == "CP":
        use = "mobile"
    if ph.get("number"):
        system = PHONE_SYSTEM.get(ph.get("equipment") or "", "phone")
        out.append({"system": system, "value": ph["number"], "use": use})
    if ph.get("email"):
        out.append({"system": "email", "value": ph["email"], "use": use if use != "mobile" else None})
    return out


def _identifier(request: Request, i: dict) -> dict:
    out: dict[str, Any] = {"value": i["value"], "system": system_for(request, i.get("authority"))}
    if i.get("type"):
        out["type"] = {"coding": [{"system": V2_0203, "code": i["type"]}]}
        if i["type"] == "MR":
            out["use"] = "usual"
    return out


def build(request: Request, record: dict) -> Patient:
    """The Patient of a (masked) chart record; for a merged-away MRN the inactive stub."""
    mrn = record["mrn"]
    requested = record.get("requested_mrn") or mrn
    meta = {"lastUpdated": common.instant(record.get("updated_at"))} if record.get("updated_at") else None
    gender = GENDER.get((record.get("sex") or "").lower())
    birth = common.date_of(record.get("birth_date"))
    name = _name(record.get("name"))
    if requested != mrn:  # merged away: not to be used, points at the survivor
        return Patient(
            id=requested,
            meta=meta,
            active=False,
            identifier=[
                _identifier(
                    request,
                    {"value": requested, "authority": _mrn_authority(record, requested), "type": "MR"},
                )
            ],
            name=[name] if name else None,
            gender=gender,
            birthDate=birth,
            link=[{"type": "replaced-by", "other": {"reference": f"Patient/{mrn}"}}],
        )
    shown = masking.chart(record, False)
    mrns = {mrn, *(record.get("merged_from") or [])}
    identifiers = [_identifier(request, i) for i in shown.get("identifiers") or [] if i.get("value") in mrns]
    names = [n for n in [name, *(_name(o) for o in record.get("other_names") or [])] if n]
    telecom = [t for ph in record.get("phones") or [] for t in _telecom(ph)]
    addresses = [a for a in (_address(x) for x in record.get("addresses") or []) if a]
    deceased: dict[str, Any] = {}
    death = common.instant(record.get("death_at")) if record.get("death_at") else None
    if death:
        deceased["deceasedDateTime"] = death
    elif (record.get("deceased") or "").upper() in ("Y", "N"):
        deceased["deceasedBoolean"] = record["deceased"].upper() == "Y"
    links = [
        {"type": "replaces", "other": {"reference": f"Patient/{m}"}}
        for m in record.get("merged_from") or []
        if m != mrn
    ]
    return Patient(
        id=mrn,
        meta=meta,
        active=True,
        identifier=identifiers or None,
        name=names or None,
        telecom=telecom or None,
        gender=gender,
        birthDate=birth,
        address=addresses or None,
        link=links or None,
        **deceased,
    )


def _mrn_authority(record: dict, value: str | None = None) -> str | None:
    value = value or record.get("mrn")
    return next(
        (i.get("authority") for i in record.get("identifiers") or [] if i.get("value") == value), None
    )


@router.get("/fhir/Patient/{id}")
def read_patient(id: str, request: Request):
    """One Patient by MRN; 404 OperationOutcome when unknown."""
    with reading(request) as conn:
        record = chart_read.get_chart(conn, id)
    if record is None:
        raise FhirError(404, f"Patient/{id} is not known")
    return common.respond(build(request, record))


def _matches(record: dict, p: dict, system_of) -> bool:
    """The filters search_patients does not do itself, on a chart record."""
    if p.get("gender") and GENDER.get((record.get("sex") or "").lower()) != p["gender"]:
        return False
    birth = common.date_of(record.get("birth_date")) or ""
    if p.get("birthdate") and not birth.startswith(p["birthdate"]):
        return False
    n = record.get("name") or {}
    for key in ("family", "given"):
        if p.get(key) and not (n.get(key) or "").lower().startswith(p[key].lower()):
            return False
    if p.get("name"):
        parts = [(n.get(k) or "").lower() for k in ("family", "given")]
        if not any(x.startswith(p["name"].lower()) for x in parts):
            return False
    return True


@router.get("/fhir/Patient")
def search_patient(request: Request):
    """Patients by identifier (the MRN: ``[system|]value``), _id, family, given, name (family or given,
    prefix, case-insensitive), birthdate (YYYY[-MM[-DD]]), gender (administrative-gender);
    a searchset Bundle of ``_count`` (default 20, at most 100) with ``total`` and paging links."""
    p = common.params(request, SEARCH)
    count, offset = common.paging(p)
    if p.get("birthdate"):
        p["birthdate"] = common.date_param("birthdate", p["birthdate"])
    if p.get("gender") and p["gender"] not in ("male", "female", "other", "unknown"):
        raise FhirError(400, "gender must be male, female, other or unknown")
    criteria = {k: v for k, v in p.items() if k in SEARCH and v}
    if not criteria:
        raise FhirError(400, "give at least one of " + ", ".join(sorted(SEARCH)))
    found: list[Patient] = []
    with reading(request) as conn:
        wanted = p.get("_id") or None
        if p.get("identifier"):
            system, value = common.token_param(p["identifier"])
            if wanted and wanted != value:
                value = ""
            wanted = value
        else:
            system = None
        if wanted is not None:
            record = chart_read.get_chart(conn, wanted) if wanted else None
            if record is not None and system is not None:
                if (system_for(request, _mrn_authority(record)) or "") != system:
                    record = None
            if record is not None and _matches(record, p, None):
                found.append(build(request, record))
        else:
            rows = [r for r in _candidates(conn, p) if _matches(r, p, None)]
            total = len(rows)
            for r in rows[offset : offset + count]:
                record = chart_read.get_chart(conn, r["mrn"])
                if record is not None:
                    found.append(build(request, record))
            auth.audit_listed(request, [r.id for r in found], action="listed")
            return common.searchset(request, "Patient", found, total, count, offset, p)
    page = found[offset : offset + count]
    auth.audit_listed(request, [r.id for r in page], action="listed")  # each patient in the Bundle
    return common.searchset(request, "Patient", page, len(found), count, offset, p)


def _candidates(conn, p: dict) -> list[dict]:
    """Rows (mrn, name, birth_date, sex) from the chart store's search (names and birth date as prefixes), at most MAX_MATCHES."""
    limit = common.MAX_MATCHES + 1
    birth = p.get("birthdate")
    if p.get("name"):
        seen: dict[str, dict] = {}
        for key in ("family", "given"):
            kw = {"family": p.get("family"), "given": p.get("given"), key: p["name"]}
            for r in chart_read.search_patients(conn, **kw, birth_date=birth, limit=limit):
                seen.setdefault(r["mrn"], r)
        rows = sorted(
            seen.values(),
            key=lambda r: (r["name"].get("family") or "", r["name"].get("given") or "", r["mrn"]),
        )
    else:
        rows = chart_read.search_patients(
            conn, family=p.get("family"), given=p.get("given"), birth_date=birth, limit=limit
        )
    if len(rows) > common.MAX_MATCHES:
        raise FhirError(
            400, f"more than {common.MAX_MATCHES} patients match: narrow the search", "too-costly"
        )
    return rows
