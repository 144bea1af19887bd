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
from interface.store import chart_pages
from interface.web.fhir import access, common, model
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
    meta = common.meta(record)
    gender = GENDER.get((record.get("sex") or "").lower())
    birth = common.date_of(record.get("birth_date"))
    name = _name(record.get("name"))
    if requested != mrn:  # merged away: not to be used, points at the survivor
        return model.make(
            Patient,
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
    return model.make(
        Patient,
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


def load(conn, mrn: str) -> dict | None:
    """The chart record of an MRN for :func:`build` (a merged-away MRN: the survivor's, with
    ``requested_mrn`` the MRN asked for), in one query per table; None when unknown."""
    row = chart_pages.survivor_row(conn, mrn)
    if row is None:
        return None
    found = chart_pages.patients(conn, [row["id"]], [row])
    return {**found[0], "requested_mrn": mrn}


def by_mrn(request: Request, conn, mrns: list[str]) -> list[Patient]:
    """The Patients of these (current) MRNs, for ``_include``: one query per table."""
    ids = chart_pages.patient_ids(conn, list(dict.fromkeys(m for m in mrns if m)))
    return [build(request, r) for r in chart_pages.patients(conn, list(ids.values()))]


@router.get("/fhir/Patient/{id}")
def read_patient(id: str, request: Request):
    """One Patient by MRN, with ``ETag``; 404 OperationOutcome when unknown."""
    with reading(request) as conn:
        record = load(conn, id)
        if record is not None:
            access.check_patient(request, conn, record["mrn"], f"Patient/{id}")
    if record is None:
        raise FhirError(404, f"Patient/{id} is not known")
    access.audit(request, "view", "patient", id, [record["mrn"]])
    return common.read(request, build(request, record))


def _sexes(gender: str) -> list[str]:
    """The stored sex values (lower case) that read as ``gender``."""
    return sorted(k for k, v in GENDER.items() if v == gender)


@router.get("/fhir/Patient")
def search_patient(request: Request):
    """Patients by identifier (the MRN: ``[system|]value``), _id, family, given, name (family or
    given; prefix, case-insensitive), birthdate (prefixes eq ne ge le gt lt sa eb), gender
    (administrative-gender), _lastUpdated; every filter in SQL, one count and one page query,
    then one query per table for the page's patients; a searchset Bundle with ``total`` (see
    ``common.total_mode``: not counted when the first page holds every match)."""
    p = common.params(request, SEARCH)
    count, offset = common.paging(p)
    total_mode = common.total_mode(p)
    birth = common.date_compares("birthdate", common.values(request, "birthdate"))
    updated = common.last_updated(request)
    if p.get("gender") and p["gender"] not in ("male", "female", "other", "unknown"):
        raise FhirError(400, "gender must be male, female, other or unknown")
    common.includes(request, "Patient:none")  # no _include on Patient: any is refused
    if not any(p.get(k) for k in SEARCH) and not updated:
        raise FhirError(400, "give at least one of " + ", ".join(sorted(SEARCH | {"_lastUpdated"})))
    wanted: list[str] = [v for v in (p.get("_id"),) if v]
    system = None
    if p.get("identifier"):
        system, value = common.token_param(p["identifier"])
        wanted.append(value)
    with reading(request) as conn:
        if wanted and len(set(wanted)) > 1:
            return common.searchset(request, "Patient", [], 0, count, offset)
        mrns: list[str] | None = None
        if wanted:
            record = load(conn, wanted[0])
            if record is not None and system is not None:
                if (system_for(request, _mrn_authority(record, wanted[0])) or "") != system:
                    record = None
            if record is None:
                return _result(request, [], 0, count, offset)
            if record["mrn"] != wanted[0]:  # merged away: its inactive stub, on its own
                others = {k for k in SEARCH if p.get(k)} - {"_id", "identifier"}
                found = [] if others or birth or updated else [record]
                found = [r for r in found if access.narrow(request, conn, r["mrn"]) != ""]
                return _result(request, found, len(found), count, offset)
            mrns = [record["mrn"]]
        bound = access.narrow(request, conn, None)
        if bound is not None:
            mrns = [m for m in (mrns if mrns is not None else [bound]) if m == bound]
        total, ids, more = chart_pages.search_patients(
            conn,
            mrns=mrns,
            family=p.get("family"),
            given=p.get("given"),
            name=p.get("name"),
            birth=birth,
            sexes=_sexes(p["gender"]) if p.get("gender") else None,
            updated=updated,
            count=count,
            offset=offset,
            total=total_mode,
        )
        records = chart_pages.patients(conn, ids)
    return _result(request, records, total, count, offset, more)


def _result(
    request: Request, records: list[dict], total: int | None, count: int, offset: int, more: bool = False
):
    page = [build(request, r) for r in records]
    access.audit(request, "search", "patient", None, [r["mrn"] for r in records])
    return common.searchset(request, "Patient", page, total, count, offset, more=more)
