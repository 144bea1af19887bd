"""``GET /fhir/DocumentReference/{id}``, ``GET /fhir/DocumentReference?...``, the document's
``_history`` and ``GET /fhir/Binary/{id}``: the document index as FHIR. The id is the document
number (TXA-12); the content is ``Binary/{id}``, the stored bytes of the current version. The
``versionId`` is the journal id of the message that made the version (``document_versions``)."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference

from interface.store import chart_pages, document_read, documents
from interface.store.chart import resolve_mrn
from interface.store.document_ids import AmbiguousDocument
from interface.web import sensitive
from interface.web.fhir import access, common, lists, model
from interface.web.fhir.common import FhirError
from interface.web.fhir.identifiers import system_for
from interface.web.reading import reading

router = APIRouter()

V2_0270 = "http://terminology.hl7.org/CodeSystem/v2-0270"
# TXA-19 availability (0273) -> DocumentReference.status; search status -> the v2 code
STATUS = {"AV": "current", "OB": "superseded", "CA": "entered-in-error", "UN": "current"}
STATUS_CODE = {"current": "AV", "superseded": "OB", "entered-in-error": "CA"}
# TXA-17 completion status (0271) -> docStatus
DOC_STATUS = {
    "AU": "final",
    "LA": "final",
    "DI": "preliminary",
    "DO": "preliminary",
    "IN": "preliminary",
    "IP": "preliminary",
    "PA": "preliminary",
}
SEARCH = {"patient", "subject", "type", "status", "date", "_id"}
DATE_PREFIXES = ("eq", "ne", "ge", "le", "gt", "lt", "sa", "eb")
MAX_DOCUMENTS = 500  # what document_read.list_documents reads at most


def _person(p: Any) -> dict | None:
    if not isinstance(p, dict):
        return None
    display = " ".join(x for x in (p.get("given"), p.get("family")) if x) or None
    ident = {"value": p["id"]} if p.get("id") else None
    return {"display": display, "identifier": ident} if (display or ident) else None


def build(
    request: Request, e: dict, encounters: dict | None = None, history: bool = False
) -> DocumentReference:
    """The DocumentReference of an index entry (or of a version's snapshot: ``history``, whose
    content is ``Binary/<number>/_history/<versionId>``); ``encounters``: ``{(mrn, visit
    number): Encounter id}`` of the page."""
    number = e["document_number"]
    authority = e.get("namespace") or e.get("universal_id")
    meta = common.meta(e)
    relates = []
    if e.get("replaces"):
        relates.append({"code": "replaces", "target": {"reference": f"DocumentReference/{e['replaces']}"}})
    if e.get("parent_document_number"):
        target = {"reference": f"DocumentReference/{e['parent_document_number']}"}
        relates.append({"code": "appends", "target": target})
    if e.get("content_kind") == "reference" and e.get("content_reference"):
        attachment: dict[str, Any] = {"url": e["content_reference"], "contentType": e.get("content_type")}
    elif e.get("content_sha256") and not e.get("cancelled"):
        url = f"Binary/{number}/_history/{e['message_id']}" if history else f"Binary/{number}"
        attachment = {
            "url": url,
            "contentType": e.get("content_type"),
            "size": e.get("content_size"),
        }
    else:
        attachment = {"title": "no current content", "contentType": e.get("content_type")}
    date = common.instant(e.get("origination_at") or e.get("activity_at"))
    authors = [a for a in [_person(e.get("author"))] if a]
    context: dict[str, Any] = {}
    if e.get("visit_number"):
        encounter: dict[str, Any] = {"identifier": {"value": e["visit_number"]}, "type": "Encounter"}
        found = (encounters or {}).get((e.get("mrn"), e["visit_number"]))
        if found is not None:
            encounter["reference"] = f"Encounter/{found}"
        context["encounter"] = [encounter]
    activity = common.instant(e.get("activity_at"))
    if activity:
        context["period"] = {"start": activity}
    return model.make(
        DocumentReference,
        id=number,
        meta=meta,
        masterIdentifier={"system": system_for(request, authority), "value": number},
        status=STATUS.get((e.get("availability") or "").upper(), "current"),
        docStatus=DOC_STATUS.get((e.get("status") or "").upper()),
        type={"coding": [{"system": V2_0270, "code": e["type"]}]} if e.get("type") else None,
        subject={"reference": f"Patient/{e['mrn']}"} if e.get("mrn") else None,
        date=date,
        author=authors or None,
        authenticator=_person(e.get("authenticated_by")),
        relatesTo=relates or None,
        content=[{"attachment": {k: v for k, v in attachment.items() if v is not None}}],
        context=context or None,
    )


def _entry(conn, number: str) -> dict | None:
    try:
        return document_read.get_document(conn, number)
    except AmbiguousDocument:
        raise FhirError(
            400, f"document number {number} is used by more than one namespace", "multiple-matches"
        )


def _encounters(conn, entries: list[dict]) -> dict:
    return chart_pages.visits_by_number(conn, [(e.get("mrn"), e.get("visit_number")) for e in entries])


@router.get("/fhir/DocumentReference/{id}")
def read_document(id: str, request: Request):
    with reading(request) as conn:
        entry = _entry(conn, id)
        if entry is not None:
            access.check_patient(request, conn, entry.get("mrn"), f"DocumentReference/{id}")
            encounters = _encounters(conn, [entry])
    if entry is None:
        raise FhirError(404, f"DocumentReference/{id} is not known")
    access.audit(request, "view", "document", id, [entry.get("mrn")])
    return common.read(request, build(request, entry, encounters))


def _versions(request: Request, conn, id: str) -> list[dict]:
    try:
        found = document_read.version_snapshots(conn, id)
    except AmbiguousDocument:
        raise FhirError(400, f"document number {id} is used by more than one namespace", "multiple-matches")
    if found is None:
        raise FhirError(404, f"DocumentReference/{id} is not known")
    if found:
        access.check_patient(request, conn, found[-1].get("mrn"), f"DocumentReference/{id}")
    return found


@router.get("/fhir/DocumentReference/{id}/_history")
def document_history(id: str, request: Request):
    """Every version of the document (one per applied MDM message), newest first: a history
    Bundle; each entry's ``request`` is the message's method (POST for the first, else PUT)."""
    with reading(request) as conn:
        versions = _versions(request, conn, id)
        encounters = _encounters(conn, versions)
    base = common.base_url(request)
    entries = []
    for i, snap in reversed(list(enumerate(versions))):
        resource = build(request, snap, encounters, history=True)
        entries.append(
            {
                "fullUrl": f"{base}/DocumentReference/{id}",
                "resource": resource,
                "request": {"method": "POST" if i == 0 else "PUT", "url": f"DocumentReference/{id}"},
                "response": {
                    "status": "201" if i == 0 else "200",
                    "etag": f'W/"{snap["message_id"]}"',
                    "lastModified": common.instant(snap.get("updated_at")),
                },
            }
        )
    access.audit(request, "view", "document", id, [versions[-1].get("mrn") if versions else None])
    bundle = model.make(
        Bundle,
        type="history",
        total=len(entries),
        link=[{"relation": "self", "url": f"{base}/DocumentReference/{id}/_history"}],
        entry=entries or None,
    )
    return common.respond(bundle)


@router.get("/fhir/DocumentReference/{id}/_history/{vid}")
def document_version(id: str, vid: str, request: Request):
    """One version (``vid``: the ``versionId``, the journal id of the message that made it)."""
    with reading(request) as conn:
        versions = _versions(request, conn, id)
        snap = next((v for v in versions if str(v["message_id"]) == vid), None)
        encounters = _encounters(conn, [snap]) if snap else {}
    if snap is None:
        raise FhirError(404, f"DocumentReference/{id} has no version {vid}")
    access.audit(request, "view", "document", id, [snap.get("mrn")])
    current = str(versions[-1]["message_id"]) == vid
    return common.read(request, build(request, snap, encounters, history=not current))


@router.get("/fhir/DocumentReference")
def search_documents(request: Request):
    """Documents by patient (``Patient/MRN`` or the MRN; a merged-away MRN finds the survivor's),
    type (``[system|]code`` of table 0270), status (current, superseded, entered-in-error) and date
    (YYYY[-MM[-DD]], the origination date); newest first; a searchset Bundle."""
    p = common.params(request, SEARCH)
    count, offset = common.paging(p)
    patient = p.get("patient") or p.get("subject")
    if patient and patient.startswith("Patient/"):
        patient = patient[len("Patient/") :]
    system, code = common.token_param(p["type"]) if p.get("type") else (None, None)
    if system not in (None, V2_0270):
        raise FhirError(400, f"type system must be {V2_0270}")
    status = p.get("status")
    if status and status not in STATUS_CODE:
        raise FhirError(400, "status must be current, superseded or entered-in-error")
    dates = common.date_compares("date", common.values(request, "date"), DATE_PREFIXES)
    updated = common.last_updated(request)
    include = common.includes(request, "DocumentReference")
    if not any(p.get(k) for k in SEARCH) and not updated and not dates:
        raise FhirError(400, "give at least one of " + ", ".join(sorted(SEARCH | {"_lastUpdated"})))
    with reading(request) as conn:
        asked = (resolve_mrn(conn, patient) or patient) if patient else None
        mrn = access.narrow(request, conn, asked)
        if mrn == "":
            rows = []
        elif p.get("_id"):
            one = _entry(conn, p["_id"])
            rows = [one] if one and (mrn is None or one.get("mrn") == mrn) else []
        else:
            rows = document_read.list_documents(
                conn,
                mrn=mrn,
                type=code or None,
                status=STATUS_CODE[status] if status else None,
                limit=MAX_DOCUMENTS + 1,
            )
        if len(rows) > MAX_DOCUMENTS:
            raise FhirError(
                400, f"more than {MAX_DOCUMENTS} documents match: narrow the search", "too-costly"
            )
        rows = [r for r in rows if _keep(r, code, status, dates, updated)]
        shown = rows[offset : offset + count]
        encounters = _encounters(conn, shown)
        included = lists.include_patients(request, conn, shown) if include else []
    page = [build(request, r, encounters) for r in shown]
    access.audit(request, "search", "document", None, [r.get("mrn") for r in shown])
    return common.searchset(request, "DocumentReference", page, len(rows), count, offset, included=included)


def _date_matches(value: str, op: str, wanted: str) -> bool:
    """A document date (an instant) against a date search value, on the ISO text."""
    top = chart_pages.after(wanted)
    return {
        "eq": value.startswith(wanted),
        "ne": not value.startswith(wanted),
        "ge": value >= wanted,
        "gt": value >= top,
        "sa": value >= top,
        "le": value < top,
        "lt": value < wanted,
        "eb": value < wanted,
    }[op]


def _keep(e: dict, code: str | None, status: str | None, dates: list, updated: list) -> bool:
    if code and (e.get("type") or "").upper() != code.upper():
        return False
    if status and STATUS.get((e.get("availability") or "").upper(), "current") != status:
        return False
    when = common.instant(e.get("origination_at") or e.get("activity_at")) or ""
    if any(not (when and _date_matches(when, op, v)) for op, v in dates):
        return False
    if updated:
        at = common.utc(e.get("updated_at"))
        for op, bound in updated:
            if at is None or not (at >= bound if op == "ge" else at < bound):
                return False
    return True


@router.get("/fhir/Binary/{id}")
def read_binary(id: str, request: Request):
    """The current content of document ``id``: the bytes with their media type, or (Accept
    ``application/fhir+json``) a Binary resource carrying them base64. 404 when there is none
    (unknown, cancelled, or only a reference to content held elsewhere)."""
    return _binary(request, id, None)


@router.get("/fhir/Binary/{id}/_history/{vid}")
def read_binary_version(id: str, vid: str, request: Request):
    """The content of one version of document ``id`` (``vid``: the DocumentReference's
    ``versionId``), as :func:`read_binary`."""
    return _binary(request, id, vid)


def _binary(request: Request, id: str, vid: str | None):
    settings = getattr(request.app.state, "document_settings", None) or documents.DocumentSettings()
    with reading(request) as conn:
        entry = _entry(conn, id)
        got = None
        if entry is not None and sensitive.categories(request, entry):
            if not sensitive.glass_broken(conn, request.state.user, id, sensitive.now(request)):
                raise FhirError(
                    403,
                    f"Binary/{id} is a sensitive record: open it with a reason first (the console, or "
                    "?reason= on /api/documents/{number}/content)",
                )
        if entry is not None:
            access.check_patient(request, conn, entry.get("mrn"), f"Binary/{id}")
            namespace = entry.get("namespace") or entry.get("universal_id")
            version = None
            if vid is not None:
                snap = next((v for v in _versions(request, conn, id) if str(v["message_id"]) == vid), None)
                version = snap["version"] if snap is not None else -1
                if snap is not None:
                    entry = snap
            if version != -1:
                got = document_read.get_content(conn, id, settings, version=version, namespace=namespace)
    if got is None or entry is None:
        raise FhirError(404, f"Binary/{id} is not known or has no such content")
    access.audit(request, "view", "document", id, [entry.get("mrn")], detail=request.url.path)
    data, media = got
    if (
        common.MEDIA_TYPE in request.headers.get("accept", "")
        or request.query_params.get("_format") == "json"
    ):
        binary = model.make(
            Binary,
            id=id,
            meta=common.meta(entry),
            contentType=media.split(";")[0].strip(),
            data=base64.b64encode(data).decode("ascii"),
        )
        return common.read(request, binary)
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, no-store",
    }
    if entry.get("message_id") is not None:
        headers["ETag"] = f'W/"{entry["message_id"]}"'
    return Response(content=data, media_type=media, headers=headers)
