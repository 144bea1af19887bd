"""Reading a chart: the patient with names, addresses, phones, visits and
history as plain data for the API, the pages and the CLI; patient search.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from interface.store import chart_locations
from interface.store import chart_schema as cs
from interface.store.chart import _merged_from, _optional, _resolve_row


def _name_json(m: Any, prefix: str = "") -> dict[str, Any]:
    return {p: m[prefix + p] for p in ("family", "given", "middle", "prefix", "suffix", "degree")}


def _person_json(m: Any, prefix: str) -> dict[str, Any] | None:
    out = {p: m[prefix + p] for p in ("id", "family", "given", "authority")}
    return out if any(v is not None for v in out.values()) else None


def _address_json(m: Any, prefix: str = "") -> dict[str, Any]:
    return {p: m[prefix + p] for p in ("street", "other", "city", "state", "postal_code", "country")}


def _visit_json(m: Any) -> dict[str, Any]:
    return {
        "visit_number": m["visit_number"],
        "visit_authority": m["visit_authority"],
        "class": m["class"],
        "status": m["status"],
        "location": m["location"],
        "prior_location": m["prior_location"],
        "attending": _person_json(m, "attending_"),
        "referring": _person_json(m, "referring_"),
        "hospital_service": m["hospital_service"],
        "admit_source": m["admit_source"],
        "admission_type": m["admission_type"],
        "discharge_disposition": m["discharge_disposition"],
        "admitted_at": m["admitted_at"],
        "discharged_at": m["discharged_at"],
        "expected_admit_at": m["expected_admit_at"],
        "updated_at": _iso(m["updated_at"]),
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _rows(conn: Connection, table, patient_id: int) -> list[Any]:
    return [
        r._mapping
        for r in conn.execute(
            select(table).where(table.c.patient_id == patient_id).order_by(table.c.seq, table.c.id)
        )
    ]


_PHONE_ORDER = {"phones": 0, "business_phones": 1, "telecom": 2}  # PID-13, PID-14, PID-40


def get_chart(conn: Connection, mrn: str) -> dict | None:
    """The chart record of PRODUCT.md for an MRN, or None if unknown.

    A merged-away MRN answers with the survivor's chart: ``mrn`` is the survivor,
    ``requested_mrn`` the MRN asked for, ``merged_into`` the survivor (null when the requested MRN
    is itself the survivor) and ``merged_from`` every MRN merged into the survivor.
    """
    row = _resolve_row(conn, mrn)
    if row is None:
        return None
    p = row._mapping
    ti = cs.patient_identifiers
    identifiers = [
        {"value": r.value, "authority": r.authority or None, "type": r.type or None}
        for r in conn.execute(select(ti).where(ti.c.patient_id == row.id).order_by(ti.c.id))
    ]
    tv = cs.visits
    visit_rows = conn.execute(
        select(tv).where(tv.c.patient_id == row.id).order_by(tv.c.created_at.desc(), tv.c.id.desc())
    ).all()
    visit_numbers = {v.id: v.visit_number for v in visit_rows}
    locations = chart_locations.locations_for(conn, list(visit_numbers))
    summaries = _optional("interface.store.document_read", "summaries_for")
    return {
        "mrn": row.mrn,
        "requested_mrn": mrn,
        "merged_into": row.mrn if row.mrn != mrn else None,
        "merged_from": _merged_from(conn, row.mrn),
        "identifiers": identifiers,
        "name": {**_name_json(p), "type": p["name_type"]},
        "other_names": [{**_name_json(n), "type": n["type"]} for n in _rows(conn, cs.patient_names, row.id)],
        "birth_date": p["birth_date"],
        "sex": p["sex"],
        "mother_maiden_name": p["mother_maiden_name"],
        "race": p["race"],
        "ethnicity": p["ethnicity"],
        "marital_status": p["marital_status"],
        "language": p["language"],
        "religion": p["religion"],
        "ssn": p["ssn"],
        "death_at": p["death_at"],
        "deceased": p["deceased"],
        "addresses": [
            {**_address_json(a), "type": a["type"]} for a in _rows(conn, cs.patient_addresses, row.id)
        ],
        "phones": [
            {k: ph[k] for k in ("number", "use", "equipment", "email", "source")}
            for ph in sorted(
                _rows(conn, cs.patient_phones, row.id), key=lambda ph: _PHONE_ORDER.get(ph["source"], 0)
            )
        ],
        "insurance": [
            {
                "plan": i["plan"],
                "company": i["company"],
                "company_id": i["company_id"],
                "member_id": i["member_id"],
                "group": i["group_number"],
                "group_name": i["group_name"],
                "effective": i["effective"],
                "expiration": i["expiration"],
                "insured_name": _name_json(i, "insured_"),
                "relationship": i["relationship"],
                "priority": i["priority"],
            }
            for i in _rows(conn, cs.insurance, row.id)
        ],
        "visits": [{**_visit_json(v._mapping), "locations": locations.get(v.id, [])} for v in visit_rows],
        "documents": list(summaries(conn, row.mrn)) if summaries is not None else [],
        "next_of_kin": [
            {
                "name": _name_json(n),
                "relationship": n["relationship"],
                "phone": n["phone"],
                "address": _address_json(n, "address_"),
                "contact_role": n["contact_role"],
            }
            for n in _rows(conn, cs.next_of_kin, row.id)
        ],
        "allergies": [
            {k: a[k] for k in ("code", "description", "type", "severity", "reaction", "identified")}
            for a in _rows(conn, cs.allergies, row.id)
        ],
        "diagnoses": [
            {
                **{k: d[k] for k in ("code", "description", "coding_system", "type", "at")},
                "visit_number": visit_numbers.get(d["visit_id"]),
            }
            for d in _rows(conn, cs.diagnoses, row.id)
        ],
        "updated_at": _iso(p["updated_at"]),
        "last_event": p["last_event"],
    }


def _like_prefix(value: str) -> str:
    """A LIKE pattern matching values that start with ``value`` (wildcards taken literally)."""
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def search_patients(
    conn: Connection,
    family: str | None = None,
    given: str | None = None,
    birth_date: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict]:
    """Patients (not merged-away MRNs) whose names start with the given text, case-insensitive,
    and whose birth date starts with ``birth_date`` (``1980``, ``1980-01``, ``1980-01-31``).
    Ordered by family, given, MRN; paged by ``limit``/``offset``."""
    t = cs.patients
    q = select(t).where(t.c.merged_into.is_(None))
    if family:
        q = q.where(func.lower(t.c.family).like(_like_prefix(family.strip()), escape="\\"))
    if given:
        q = q.where(func.lower(t.c.given).like(_like_prefix(given.strip()), escape="\\"))
    if birth_date:
        q = q.where(t.c.birth_date.like(_like_prefix(birth_date.strip()), escape="\\"))
    q = q.order_by(t.c.family, t.c.given, t.c.mrn).limit(max(0, int(limit)))
    q = q.offset(max(0, int(offset)))
    return [
        {
            "mrn": r.mrn,
            "name": {**_name_json(r._mapping), "type": r.name_type},
            "birth_date": r.birth_date,
            "sex": r.sex,
        }
        for r in conn.execute(q)
    ]


def history(conn: Connection, mrn: str) -> list[dict]:
    """What each message changed on this patient's chart (merged-in patients included), oldest
    first: ``{at, message_id, event, mrn, table, row_id, field, action, old, new}``."""
    row = _resolve_row(conn, mrn)
    if row is None:
        return []
    h = cs.chart_history
    return [
        {
            "at": _iso(r.at),
            "message_id": r.message_id,
            "event": r.event,
            "mrn": r.mrn,
            "table": r.table_name,
            "row_id": r.row_id,
            "field": r.field,
            "action": r.action,
            "old": r.old_value,
            "new": r.new_value,
        }
        for r in conn.execute(select(h).where(h.c.patient_id == row.id).order_by(h.c.id))
    ]
