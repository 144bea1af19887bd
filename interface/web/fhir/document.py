"""``GET /fhir/DocumentReference/{id}``, ``GET /fhir/DocumentReference?...`` and
``GET /fhir/Binary/{id}``: the document index as FHIR. The id is the document number (TXA-12);
the content is ``Binary/{id}``, the stored bytes of the current version."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.documentreference import DocumentReference

from interface.store import document_read, documents
from interface.store.chart import resolve_mrn
from interface.store.document_ids import AmbiguousDocument
from interface.web import sensitive
from interface.web.fhir import common
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
MAX_DOCUMENTS = 500  # what document_read.list_documents reads at most


def _person(p: Any) -> dict | None:
    if not isinstance(p, dict):
        return None
    display = " ".join(x for x in (p.get("given"), p.get("family")) if x) or None
    ident = {"value": p["id"]} if p.get("id") else None
    return {"display": display, "identifier": ident} if (display or ident) else None


def build(request: Request, e: dict) -> DocumentReference:
    number = e["document_number"]
    authority = e.get("namespace") or e.get("universal_id")
    meta = {"lastUpdated": common.instant(e.get("updated_at"))} if e.get("updated_at") else None
    relates = []
    if e.get("replaces"):
        relates.append({"code": "replaces", "target": {"reference": f"DocumentReference/{e['replaces']}"}})
    if e.get("parent_document_number"):
        target = {"reference": f"DocumentReference/{e['parent_document_number']}"}
        relates.append({"code": "appends", "target": target})
    if e.get("content_kind") == "reference" and e.get("content_reference"):
        attachment: dict[str, Any] = {"url": e["content_reference"], "contentType": e.get("content_type")}
    elif e.get("content_sha256") and not e.get("cancelled"):
        attachment = {
            "url": f"Binary/{number}",
            "contentType": e.get("content_type"),
            "size": e.get("content_size"),
        }
    else:
        attachment = {"title": "no current content", "contentType": e.get("content_type")}
    date = common.instant(e.get("origination_at") or e.get("activity_at"))
    authors = [a for a in [_person(e.get("author"))] if a]
    context: dict[str, Any] = {}
    if e.get("visit_number"):
        context["encounter"] = [{"reference": f"Encounter/{e['visit_number']}"}]
    activity = common.instant(e.get("activity_at"))
    if activity:
        context["period"] = {"start": activity}
    return DocumentReference(
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


@router.get("/fhir/DocumentReference/{id}")
def read_document(id: str, request: Request):
    with reading(request) as conn:
        entry = _entry(conn, id)
    if entry is None:
        raise FhirError(404, f"DocumentReference/{id} is not known")
    return common.respond(build(request, entry))


@router.get("/fhir/DocumentReference")
def search_documents(request: Request):
    """Documents by patient (``Patient/MRN`` or the MRN; a merged-away MRN finds the survivor's),
    type (``[system|]code`` of table 0270), status (current, superseded, entered-in-error) and date
    (YYYY[-MM[-DD]], the origination date); newest first; a searchset Bundle."""
    p = common.params(request, SEARCH)
    count, offset = common.paging(p)
    if not any(p.get(k) for k in SEARCH):
        raise FhirError(400, "give at least one of " + ", ".join(sorted(SEARCH)))
    patient = p.get("patient") or p.get("subject")
    if patient and patient.startswith("Patient/"):
        patient = patient[len("Patient/") :]
    system, code = common.token_param(p["type"]) if p.get("type") else (None, None)
    if system not in (None, V2_0270):
        raise FhirError(400, f"type system must be {V2_0270}")
    status = p.get("status")
    if status and status not in STATUS_CODE:
        raise FhirError(400, "status must be current, superseded or entered-in-error")
    date = common.date_param("date", p["date"]) if p.get("date") else None
    with reading(request) as conn:
        if p.get("_id"):
            one = _entry(conn, p["_id"])
            rows = [one] if one else []
        else:
            mrn = (resolve_mrn(conn, patient) or patient) if patient else None
            rows = document_read.list_documents(
                conn,
                mrn=mrn,
                type=code or None,
                status=STATUS_CODE[status] if status else None,
                limit=MAX_DOCUMENTS + 1,
            )
    if len(rows) > MAX_DOCUMENTS:
        raise FhirError(400, f"more than {MAX_DOCUMENTS} documents match: narrow the search", "too-costly")
    rows = [r for r in rows if _keep(r, patient, code, status, date)]
    page = [build(request, r) for r in rows[offset : offset + count]]
    return common.searchset(request, "DocumentReference", page, len(rows), count, offset, p)


def _keep(e: dict, patient: str | None, code: str | None, status: str | None, date: str | None) -> bool:
    if code and (e.get("type") or "").upper() != code.upper():
        return False
    if status and STATUS.get((e.get("availability") or "").upper(), "current") != status:
        return False
    if date and not (common.instant(e.get("origination_at") or e.get("activity_at")) or "").startswith(date):
        return False
    return True


@router.get("/fhir/Binary/{id}")
def read_binary(id: str, request: Request):
    """The current content of document ``id``: the bytes with their media type, or (Accept
    ``application/fhir+json``) a Binary resource carrying them base64. 404 when there is none
    (unknown, cancelled, or only a reference to content held elsewhere)."""
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
            namespace = entry.get("namespace") or entry.get("universal_id")
            got = document_read.get_content(conn, id, settings, namespace=namespace)
    if got is None:
        raise FhirError(404, f"Binary/{id} is not known or has no current content")
    data, media = got
    if (
        common.MEDIA_TYPE in request.headers.get("accept", "")
        or request.query_params.get("_format") == "json"
    ):
        binary = Binary(
            id=id,
            meta={"lastUpdated": common.instant(entry.get("updated_at"))}
            if entry.get("updated_at")
            else None,
            contentType=media.split(";")[0].strip(),
            data=base64.b64encode(data).decode("ascii"),
        )
        return common.respond(binary)
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, no-store",
    }
    return Response(content=data, media_type=media, headers=headers)
