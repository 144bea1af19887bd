"""``GET /fhir/Patient/{id}/_history`` and ``/_history/{vid}``: the Patient's versions, rebuilt from
the chart's field-by-field history (``chart_history``).

A version is a message that changed what the Patient shows (``chart_pages.patient_changes``:
name, birth date, sex, death, identifiers, other names, addresses, phones); its ``versionId`` is
the message's journal id, its ``lastUpdated`` when it was applied — the same pair a read shows
for the newest one, so ``ETag`` and ``meta`` agree between read, ``_history`` and vread. Older
versions are the current chart with each newer message's changes undone (every history row keeps
the value it replaced). The undoing stops at a change it cannot undo exactly — the patient's
creation (the first version), a merge, an MRN change, rows moved by a merge — so versions older
than a merge are not rebuilt; the history says so by starting there. A merged-away MRN has one
version, the inactive stub of a read.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from fastapi import APIRouter, Request
from fhir.resources.R4B.bundle import Bundle

from interface.store import chart_pages
from interface.web.fhir import access, common, model
from interface.web.fhir.common import FhirError
from interface.web.fhir.patient import build, load
from interface.web.reading import reading

router = APIRouter()

_NAME = ("family", "given", "middle", "prefix", "suffix", "degree")
_ADDRESS = ("street", "other", "city", "state", "postal_code", "country", "type")
_PHONE = ("number", "use", "equipment", "email")
_PHONE_ORDER = {"phones": 0, "business_phones": 1, "telecom": 2}
_FIELDS = ("birth_date", "sex", "death_at", "deceased")


class _Stop(Exception):
    """A change that cannot be undone exactly: no older version is rebuilt."""


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise _Stop() from None


def _undo(state: dict, change: dict) -> None:
    """Put back what ``change`` replaced on a chart record (``chart_pages.patients``' shape)."""
    table, field, action = change["table"], change["field"], change["action"]
    if table == "patients" and action in ("set", "clear"):
        if field in _NAME:
            state["name"] = {**state["name"], field: change["old"]}
        elif field == "name_type":
            state["name"] = {**state["name"], "type": change["old"]}
        elif field in _FIELDS:
            state[field] = change["old"]
        else:
            raise _Stop()  # mrn, merged_into
    elif table == "patient_addresses" and action in ("replace", "clear"):
        state["addresses"] = [{k: a.get(k) for k in _ADDRESS} for a in _json(change["old"]) or []]
    elif table == "patient_phones" and action in ("replace", "clear") and field in _PHONE_ORDER:
        kept = [p for p in state["phones"] if p.get("source") != field]
        old = [{**{k: p.get(k) for k in _PHONE}, "source": field} for p in _json(change["old"]) or []]
        state["phones"] = sorted(kept + old, key=lambda p: _PHONE_ORDER.get(p.get("source"), 0))
    elif table == "patient_identifiers" and action == "add":
        added = _json(change["new"]) or {}
        key = (added.get("value"), added.get("authority") or None, added.get("type") or None)
        _remove(state["identifiers"], lambda i: (i["value"], i["authority"], i["type"]) == key)
    elif table == "patient_names" and action == "add":
        added = _json(change["new"]) or {}
        key = tuple(added.get(k) for k in (*_NAME, "type"))
        _remove(state["other_names"], lambda n: tuple(n.get(k) for k in (*_NAME, "type")) == key)
    else:
        raise _Stop()  # create, initial (the first version), merge, move, rename


def _remove(items: list, match) -> None:
    for i, item in enumerate(items):
        if match(item):
            del items[i]
            return
    raise _Stop()  # not there: the chart and its history disagree, go no further


def versions(record: dict, changes: list[dict]) -> tuple[list[dict], bool]:
    """(the chart record of each version, newest first; whether the oldest is the patient's
    creation). ``record``: the current record (its ``message_id`` the newest change's);
    ``changes``: ``chart_pages.patient_changes``, newest first. Pure."""
    groups: list[list[dict]] = []
    for change in changes:
        if groups and groups[-1][0]["message_id"] == change["message_id"]:
            groups[-1].append(change)
        else:
            groups.append([change])
    out = [record]
    state = copy.deepcopy(record)
    for i, group in enumerate(groups):
        try:
            for change in group:
                _undo(state, change)
        except _Stop:
            return out, any(c["action"] in ("create", "initial") for c in group)
        if i + 1 == len(groups):
            return out, False  # the row existed before its history began
        older = groups[i + 1]
        state = {**state, "message_id": older[0]["message_id"], "updated_at": older[0]["at"]}
        out.append(copy.deepcopy(state))
    return out, False


def _versions(conn, id: str) -> tuple[list[dict], bool]:
    record = load(conn, id)
    if record is None:
        raise FhirError(404, f"Patient/{id} is not known")
    if record["mrn"] != id:  # merged away: the stub only
        return [record], False
    return versions(record, chart_pages.patient_changes(conn, record["patient_id"]))


@router.get("/fhir/Patient/{id}/_history")
def patient_history(id: str, request: Request):
    """Every version of the Patient that can be rebuilt, newest first: a ``history`` Bundle."""
    with reading(request) as conn:
        found, created = _versions(conn, id)
        access.check_patient(request, conn, found[0]["mrn"], f"Patient/{id}")
    access.audit(request, "view", "patient", id, [found[0]["mrn"]])
    base = common.base_url(request)
    entries = []
    for i, record in enumerate(found):
        resource = build(request, record)
        version = resource.meta.versionId if resource.meta else None
        first = created and i == len(found) - 1  # the message that created the chart
        entries.append(
            {
                "fullUrl": f"{base}/Patient/{id}",
                "resource": resource,
                "request": {"method": "POST" if first else "PUT", "url": f"Patient/{id}"},
                "response": {
                    "status": "201" if first else "200",
                    "etag": f'W/"{version}"' if version else None,
                    "lastModified": common.instant(record.get("updated_at")),
                },
            }
        )
    bundle = model.make(
        Bundle,
        type="history",
        total=len(entries),
        link=[{"relation": "self", "url": f"{base}/Patient/{id}/_history"}],
        entry=entries,
    )
    return common.respond(bundle)


@router.get("/fhir/Patient/{id}/_history/{vid}")
def patient_version(id: str, vid: str, request: Request):
    """One version (``vid``: its ``versionId``), with ``ETag``; 404 for a version not kept."""
    with reading(request) as conn:
        found, _ = _versions(conn, id)
        access.check_patient(request, conn, found[0]["mrn"], f"Patient/{id}")
    record = next((r for r in found if str(r.get("message_id")) == vid), None)
    if record is None:
        raise FhirError(404, f"Patient/{id} has no version {vid}")
    access.audit(request, "view", "patient", id, [found[0]["mrn"]])
    return common.read(request, build(request, record))
