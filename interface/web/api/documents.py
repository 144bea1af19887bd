"""Read API for the document index (PRODUCT.md contract):

* ``GET /api/documents?mrn=&type=&status=&namespace=&limit=&offset=`` – index entries, newest
  first, paged;
* ``GET /api/documents/{document_number}?namespace=`` – one entry with ``versions`` (its history),
  ``deficiencies``, its EI (``namespace``, ``universal_id``...) and links (``replaces``,
  ``replaced_by``, ``parent_document_number``);
* ``GET /api/documents/{document_number}/content?namespace=&version=&part=&raw=`` – the bytes with
  their media type; for content sent as an RP reference pointer, JSON naming the reference(s);
  ``raw=true`` the formatted text as sent (FT escapes kept) instead of its plain-text rendering;
  a cancelled document (T11) without ``version`` answers 410 with JSON naming its versions;
* ``GET /api/deficiencies?mrn=&type=&author=&clinician=&service=&status=&bucket=&delinquent=&limit=&offset=``
  – the completeness worklist (``status`` open by default, ``waived``, ``all``), each finding with
  its responsible clinician, service, age, bucket and delinquency (docs/deficiencies.md); one
  ``listed`` audit entry per patient on the page returned;
* ``GET /api/deficiencies/summary?by=clinician|service`` – open counts per clinician or service,
  by age bucket, delinquent and waived counts;
* ``POST /api/deficiencies/{id}/waive`` ``{"reason": ...}`` – a clerk waives a finding (audited).

Uses ``app.state.engine``, ``app.state.document_settings`` (the content store; the database store
when absent) and, if set, ``app.state.clock`` (a callable returning an aware datetime) for
"overdue". Every request runs in a transaction that is rolled back (read-only on PostgreSQL).
A merged-away MRN in ``mrn=`` is followed to the surviving patient. A document number held in
several namespaces (TXA-12.2, or the universal ID TXA-12.3) needs ``?namespace=``: without it the
answer is 409 listing them. Authentication is added by whoever includes the router.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as FPath
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from interface.desk.users import User
from interface.store import deficiencies, document_read, documents
from interface.store.document_ids import AmbiguousDocument
from interface.web import sensitive
from interface.web.auth import DOCUMENTS, audit_listed, require
from interface.web.reading import reading as _reading

router = APIRouter()

MAX_OFFSET = 1_000_000_000  # far past any real index; keeps values inside a database integer
MAX_NUMBER = 1_000_000  # versions and parts

_CONTENT_RESPONSES = {
    200: {
        "description": "the stored bytes, typed as sent; JSON for an RP reference",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def _now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(timezone.utc)


def _settings(request: Request) -> documents.DocumentSettings:
    settings = getattr(request.app.state, "document_settings", None)
    return settings if settings is not None else documents.DocumentSettings()


def _patient(conn: Connection, mrn: str | None) -> str | None:
    """The MRN documents are filed under: a merged-away MRN's survivor, else the MRN as given."""
    mrn = (mrn or "").strip() or None
    if mrn is None:
        return None
    from interface.store.chart import resolve_mrn

    return resolve_mrn(conn, mrn) or mrn


def _blank(value: str | None) -> str | None:
    return (value or "").strip() or None


def _ambiguous(exc: AmbiguousDocument) -> JSONResponse:
    return JSONResponse(
        status_code=409,
        content={
            "detail": f"document number {exc.number} is held in several namespaces: add ?namespace=",
            "document_number": exc.number,
            "namespaces": exc.authorities,
        },
    )


def _entry(conn: Connection, number: str, namespace: str | None, now: datetime | None = None):
    """The entry, or the 404/409 response to give instead."""
    try:
        entry = document_read.get_document(conn, number, now=now, namespace=_blank(namespace))
    except AmbiguousDocument as exc:
        return _ambiguous(exc)
    if entry is None:
        return JSONResponse(status_code=404, content={"detail": "no document with this number"})
    return entry


@router.get("/api/documents")
def list_documents(
    request: Request,
    mrn: str | None = None,
    type: str | None = None,
    status: str | None = None,
    namespace: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict:
    """Index entries, newest first. ``type`` is TXA-2; ``status`` matches the completion status
    (TXA-17, e.g. AU) or the availability (TXA-19, e.g. CA for cancelled); codes are
    case-insensitive. Cancelled and obsolete entries are listed (marked ``cancelled``/``obsolete``)."""
    now = _now(request)
    with _reading(request) as conn:
        found = document_read.list_documents(
            conn,
            mrn=_patient(conn, mrn),
            type=_blank(type),
            status=_blank(status),
            limit=limit,
            offset=offset,
            now=now,
            namespace=_blank(namespace),
        )
    audit_listed(request, [d["mrn"] for d in found], action="listed", target_type="document")
    return {"documents": found, "limit": limit, "offset": offset}


@router.get("/api/documents/{document_number}")
def get_document(document_number: str, request: Request, namespace: str | None = None) -> dict:
    """One entry with its version history (oldest first), its deficiencies, its namespace and its
    links (``replaces``/``replaced_by``, ``cancelled``/``obsolete``). 404 if unknown; 409 when the
    number is held in several namespaces and ``namespace`` is not given."""
    now = _now(request)
    with _reading(request) as conn:
        return _entry(conn, document_number, namespace, now)


def _references(entry: dict, version: int | None) -> list[str]:
    if version is None or version == entry["version"]:
        refs = [p["reference"] for p in entry["content_parts"] if p.get("reference")]
        return refs or ([entry["content_reference"]] if entry["content_reference"] else [])
    for v in reversed(entry["versions"]):
        if v["version"] == version and v["action"] != "ignored_older" and v["content_reference"]:
            return [v["content_reference"]]
    return []


@router.get("/api/documents/{document_number}/content", response_class=Response, responses=_CONTENT_RESPONSES)
def get_document_content(
    document_number: str,
    request: Request,
    namespace: str | None = None,
    version: int | None = Query(None, ge=1, le=MAX_NUMBER),
    part: int | None = Query(None, ge=1, le=MAX_NUMBER),
    raw: bool = False,
    reason: str | None = Query(
        None, max_length=1000, description="why a sensitive record is opened (break the glass)"
    ),
) -> Response:
    """The content of the current version (or ``version``), primary part (or ``part``, 1-based),
    as stored, with its media type; formatted text (FT) is served rendered as plain text, or as
    sent with ``raw=true``. Content that is only a reference (RP) answers JSON
    ``{document_number, version, kind: "reference", references: [...]}``. A cancelled document
    (T11) without ``version`` answers 410 ``{detail, document_number, status: "cancelled",
    versions: [...]}``: its content is no longer current, each version stays readable with
    ``version=``. 404 when the document, version or part is unknown or holds no content; 409 as
    for the entry. A sensitive record (rules/sensitivity.yaml) answers 403 unless ``reason`` is
    given (recorded as ``break_glass``, which raises the ``sensitive_access`` alert) or the user
    gave one for it in the last 30 minutes."""
    settings = _settings(request)
    with _reading(request) as conn:
        entry = _entry(conn, document_number, namespace)
        if isinstance(entry, Response):
            return entry
        cats = sensitive.categories(request, entry)
        if cats and not (reason or "").strip():
            if not sensitive.glass_broken(conn, request.state.user, document_number, _now(request)):
                return JSONResponse(
                    status_code=403,
                    content={
                        "detail": "a sensitive record: give ?reason= to open it (break the glass, audited)",
                        "categories": sorted(cats),
                    },
                )
        if entry["cancelled"] and version is None:
            return JSONResponse(
                status_code=410,
                content={
                    "detail": "this document was cancelled (T11): its content is not current; "
                    "ask for a version with ?version=",
                    "document_number": document_number,
                    "namespace": entry["namespace"],
                    "status": "cancelled",
                    "versions": sorted(
                        {
                            v["version"]
                            for v in entry["versions"]
                            if v["content_sha256"] or v["content_reference"]
                        }
                    ),
                },
            )
        got = document_read.get_content(
            conn,
            document_number,
            settings,
            version=version,
            part=part,
            namespace=entry["namespace"] or entry["universal_id"],
            raw=raw,
        )
    if cats and (reason or "").strip():  # recorded once the read is over (SQLite: one writer)
        with request.app.state.engine.begin() as write:
            sensitive.break_glass(
                write, request.state.user, entry, cats, (reason or "").strip(), _now(request), via="api"
            )
    if got is not None:
        data, media_type = got
        # Content comes from outside senders: never let a browser run it in our origin.
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cache-Control": "private, no-store",
        }
        if entry["cancelled"]:
            headers["X-Document-Status"] = "cancelled"
        return Response(content=data, media_type=media_type, headers=headers)
    if part is None:
        refs = _references(entry, version)
    else:
        parts = entry["content_parts"] if version in (None, entry["version"]) else []
        refs = (
            [parts[part - 1]["reference"]] if part <= len(parts) and parts[part - 1].get("reference") else []
        )
    if refs:
        return JSONResponse(
            {
                "document_number": document_number,
                "version": version or entry["version"],
                "kind": "reference",
                "references": refs,
            }
        )
    raise HTTPException(status_code=404, detail="this document (version, part) has no content")


@router.get("/api/deficiencies")
def list_deficiencies(
    request: Request,
    mrn: str | None = None,
    type: str | None = None,
    author: str | None = None,
    clinician: str | None = Query(None, max_length=250, description="responsible clinician id or name"),
    service: str | None = Query(None, max_length=250, description="hospital service (PV1-10)"),
    status: Literal["open", "waived", "all"] = "open",
    bucket: Literal["0-7", "8-14", "15-30", "over 30"] | None = None,
    delinquent: bool | None = None,
    limit: int = Query(200, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict:
    """The worklist: every completeness finding visible now (overdue ones once due), by MRN,
    document type, author (id, or family name case-insensitively), responsible clinician,
    service, age bucket and delinquency; open (not waived) findings unless ``status`` says."""
    now = _now(request)
    with _reading(request) as conn:
        rows = deficiencies.list_deficiencies(
            conn,
            mrn=_patient(conn, mrn),
            type=_blank(type),
            author=_blank(author),
            now=now,
            clinician=_blank(clinician),
            service=_blank(service),
            status=status,
            bucket=bucket,
            delinquent=delinquent,
            bylaws_days=_bylaws_days(request),
        )
    page = rows[offset : offset + limit]
    # the route's audit_access wrote the search (against ?mrn=); now each patient the page listed
    audit_listed(request, [d.get("mrn") for d in page], action="listed", target_type="deficiency")
    return {
        "deficiencies": page,
        "total": len(rows),
        "limit": limit,
        "offset": offset,
    }


def _bylaws_days(request: Request) -> float:
    rules = _settings(request).rules
    return getattr(rules, "bylaws_days", None) or deficiencies.DEFAULT_BYLAWS_DAYS


@router.get("/api/deficiencies/summary")
def deficiency_summary(
    request: Request,
    by: Literal["clinician", "service"] = "clinician",
    service: str | None = Query(None, max_length=250),
) -> dict:
    """Counts per responsible clinician or per service: open findings by age bucket, how many are
    delinquent (past the rules' ``bylaws_days``) and how many are waived."""
    with _reading(request) as conn:
        groups = deficiencies.summarize(
            conn, by, _now(request), bylaws_days=_bylaws_days(request), service=_blank(service)
        )
    return {"by": by, "bylaws_days": _bylaws_days(request), "groups": groups}


class WaiveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000, description="why this finding needs no fixing")


@router.post("/api/deficiencies/{deficiency_id}/waive")
def waive_deficiency(
    request: Request,
    body: WaiveBody,
    deficiency_id: int = FPath(ge=1, le=MAX_OFFSET),
    user: User = Depends(require(*DOCUMENTS)),
) -> dict:
    """Waive one finding with a reason (audited); it leaves the open worklist, stays listed with
    ``status=waived``, and stays waived if the same rule fires again on that document."""
    if "\x00" in body.reason or not body.reason.strip():
        raise HTTPException(status_code=400, detail="a reason is required to waive a deficiency")
    try:
        with request.app.state.engine.begin() as conn:
            done = deficiencies.waive(
                conn, deficiency_id, user=user.name, reason=body.reason, now=_now(request)
            )
    except deficiencies.DeficiencyError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    return {**done, "status": "waived"}
