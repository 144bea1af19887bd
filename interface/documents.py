"""The document index: apply MDM document records, and read entries, history and content.

Store functions take a :class:`sqlalchemy.engine.Connection` inside the caller's transaction and
never commit. What each event does (HL7 v2.5 chapter 9):

========  ===========================================================================
T01/T02   original: creates the entry (version 1); for a known number, updates it in place
T03/T04   status change (T04 with content): updates the entry; unknown number -> error
T05/T06   addendum: a new entry whose parent is TXA-13 (the parent must be known)
T07/T08   edit: a new version of the same document number (T07 without content: the new
          version has none; earlier versions keep theirs)
T09/T10   replacement: a new entry replacing TXA-13; the parent becomes obsolete
          (availability ``OB``, ``replaced_by`` set) and stays visible
T11       cancel: availability ``CA``; the entry stays visible as cancelled
========  ===========================================================================

Ordering: messages for one patient arrive in order (the queue's promise), so an unknown document
on T03/T04/T07/T08/T11 (or an unknown parent on T05/T06/T09/T10) is a
``PermanentError(reason="unknown_document")`` for a clerk, not something to guess. A message whose
MSH-7 is older than that of the message that last changed the entry (a sender replaying an older
version) is recorded in the history as ``ignored_older`` and changes nothing.

Unknown patient: ``errors.Hold(reason="unknown_patient")`` before anything is written; the queue
retries the item when the patient arrives. A document is never filed under another patient: a
known document number or parent that belongs to a different (non-merged) MRN is an error.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Connection

from . import completeness, errors
from .content import DEFAULT_MAX_BYTES, ContentStore, extract_content, part_bytes
from .document_schema import document_versions, documents
from .errors import HL7Error, Hold, Location, PermanentError, RequiredFieldMissing
from .message import Message
from .records import CLEAR, Document, DocumentContent, Person


@dataclass
class DocumentSettings:
    """Where content goes and which completeness rules apply.

    ``content_dir`` None selects the database backend (``document_blobs``); ``rules`` None means
    no completeness checks (entries carry no deficiencies).
    """

    content_dir: Path | None = None
    max_content_bytes: int = DEFAULT_MAX_BYTES
    rules: Any = None  # completeness.CompletenessRules | None

    def store(self) -> ContentStore:
        return ContentStore(self.content_dir, self.max_content_bytes)


EVENTS = {"T01": "original", "T02": "original", "T03": "status", "T04": "status",
          "T05": "addendum", "T06": "addendum", "T07": "edit", "T08": "edit",
          "T09": "replace", "T10": "replace", "T11": "cancel"}

_SCALARS = ("visit_number", "type", "presentation", "status", "activity_at", "origination_at",
            "transcribed_at", "edited_at", "authenticated_at", "confidentiality", "availability",
            "storage_status", "change_reason", "unique_document_file_name", "placer_order",
            "filler_order")
_PERSONS = ("author", "transcriptionist", "authenticated_by")
_CONTENT_COLUMNS = ("content_kind", "content_type", "content_size", "content_sha256",
                    "content_reference", "content_parts")
_TXA = {"visit_number": ("PV1", 19), "document_number": ("TXA", 12), "parent": ("TXA", 13),
        "mrn": ("PID", 3), "event": ("MSH", 9)}


def _loc(name: str) -> Location:
    seg, fieldno = _TXA[name]
    return Location(seg, 1, fieldno)


# ---------------------------------------------------------------------------------------------
# helpers


def hl7_time_key(value: str | None) -> str | None:
    """A sortable UTC key ``YYYYMMDDHHMMSS.ffffff`` for an HL7 DTM (MSH-7); None if unreadable.

    Without an offset the value is taken as it stands (one sender, one clock)."""
    if not value:
        return None
    m = re.fullmatch(r"(\d{4,14})(?:\.(\d{1,6}))?([+-]\d{4})?", value.strip())
    if not m or len(m.group(1)) % 2:
        return None
    digits = (m.group(1) + "0101000000"[len(m.group(1)) - 4:]) if len(m.group(1)) < 14 else m.group(1)
    digits = digits[:14]
    frac = (m.group(2) or "").ljust(6, "0")
    if m.group(3):
        try:
            dt = datetime.strptime(digits, "%Y%m%d%H%M%S")
        except ValueError:
            return None
        sign = 1 if m.group(3)[0] == "+" else -1
        dt -= sign * timedelta(hours=int(m.group(3)[1:3]), minutes=int(m.group(3)[3:5]))
        digits = dt.strftime("%Y%m%d%H%M%S")
    return f"{digits}.{frac}"


def _text(value: Any) -> Any:
    """None (no change), CLEAR (clear) or a stripped string ('' counts as no change)."""
    if value is None or value is CLEAR:
        return value
    value = str(value).strip()
    return value or None


def _person(p: Person | None) -> Any:
    """A Person as stored JSON: None (no change), CLEAR, or a dict of its non-empty parts."""
    if p is None or p is CLEAR:
        return p
    values = {f.name: _text(getattr(p, f.name)) for f in dataclasses.fields(p)}
    kept = {k: v for k, v in values.items() if isinstance(v, str)}
    if kept:
        return kept
    if any(v is CLEAR for v in values.values()):
        return CLEAR
    return None


def _field_values(doc: Document) -> dict[str, Any]:
    """Column values the document asks to change (CLEAR -> None; absent fields left out)."""
    out: dict[str, Any] = {}
    for name in _SCALARS:
        v = _text(getattr(doc, name))
        if v is not None:
            out[name] = None if v is CLEAR else v
    for name in _PERSONS:
        v = _person(getattr(doc, name))
        if v is None:
            continue
        out[name] = None if v is CLEAR else json.dumps(v, sort_keys=True)
        if name == "author":
            out["author_id"] = None if v is CLEAR else v.get("id")
            out["author_family"] = None if v is CLEAR else v.get("family")
    return out


def _resolve_mrn(conn: Connection, mrn: str) -> str | None:
    """The survivor MRN the chart knows for ``mrn``, or None if the patient is unknown."""
    try:
        from .chart import resolve_mrn  # lazily: the chart store sits beside us, not below
    except ImportError as exc:
        if getattr(exc, "name", None) not in ("interface.chart", None):
            raise
        return _resolve_without_chart(conn, mrn)
    return resolve_mrn(conn, mrn)


def _resolve_without_chart(conn: Connection, mrn: str) -> str | None:
    # No chart store in this build: fall back to its table if present, else accept the MRN
    # (a documents-only set-up has no patient registry to check against).
    from .schema import metadata

    patients = metadata.tables.get("patients")
    if patients is None or "mrn" not in patients.c:
        return mrn
    merged = patients.c.merged_into if "merged_into" in patients.c else None
    for _ in range(10):  # follow merges; a cycle is a data error, not a reason to hang
        cols = [patients.c.mrn] + ([merged] if merged is not None else [])
        row = conn.execute(select(*cols).where(patients.c.mrn == mrn)).first()
        if row is None:
            return None
        if merged is None or not row[1]:
            return row[0]
        mrn = row[1]
    return None


def _load(conn: Connection, number: str) -> dict | None:
    row = conn.execute(select(documents).where(documents.c.document_number == number)).mappings().first()
    return dict(row) if row else None


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _iso(value: Any) -> Any:
    value = _aware(value)
    return value.isoformat() if isinstance(value, datetime) else value


def _entry(row: dict, now: datetime | None = None) -> dict:
    """The public index entry (PRODUCT.md contract) from a ``documents`` row."""
    out = {
        "document_number": row["document_number"],
        "parent_document_number": row["parent_document_number"],
        "replaced_by": row["replaced_by"],
        "mrn": row["mrn"],
        "visit_number": row["visit_number"],
        "type": row["type"],
        "presentation": row["presentation"],
        "status": row["status"],
        "activity_at": row["activity_at"],
        "origination_at": row["origination_at"],
        "transcribed_at": row["transcribed_at"],
        "edited_at": row["edited_at"],
        "author": json.loads(row["author"]) if row["author"] else None,
        "transcriptionist": json.loads(row["transcriptionist"]) if row["transcriptionist"] else None,
        "authenticated_by": json.loads(row["authenticated_by"]) if row["authenticated_by"] else None,
        "authenticated_at": row["authenticated_at"],
        "confidentiality": row["confidentiality"],
        "availability": row["availability"],
        "storage_status": row["storage_status"],
        "change_reason": row["change_reason"],
        "unique_document_file_name": row["unique_document_file_name"],
        "placer_order": row["placer_order"],
        "filler_order": row["filler_order"],
        "cancelled": (row["availability"] or "").upper() == "CA",
        "obsolete": (row["availability"] or "").upper() == "OB",
        "version": row["version"],
        "content_kind": row["content_kind"],
        "content_type": row["content_type"],
        "content_size": row["content_size"],
        "content_sha256": row["content_sha256"],
        "content_reference": row["content_reference"],
        "content_parts": json.loads(row["content_parts"]) if row["content_parts"] else [],
        "deficiencies": json.loads(row["deficiencies"] or "[]"),
        "last_event": row["last_event"],
        "message_id": row["message_id"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }
    if now is not None:
        out["deficiencies"] = completeness.visible(out["deficiencies"], now)
    return out


def _store_parts(conn: Connection, parts: list[DocumentContent], settings: DocumentSettings,
                 now: datetime) -> dict[str, Any]:
    """Put every part in the content store; the content columns for the entry (primary part first:
    the first binary part, else the text, else the first reference)."""
    if not parts:
        return {}
    store = settings.store()
    listed = []
    for p in parts:
        data = part_bytes(p)
        if data is None:
            listed.append({"kind": p.kind, "media_type": p.media_type, "size": None, "sha256": None,
                           "reference": p.reference})
            continue
        sha = store.put(conn, data, now)
        listed.append({"kind": p.kind, "media_type": p.media_type or "application/octet-stream",
                       "size": len(data), "sha256": sha, "reference": None})
    primary = next((x for x in listed if x["kind"] == "binary"), None) \
        or next((x for x in listed if x["kind"] == "text"), None) or listed[0]
    return {"content_kind": primary["kind"], "content_type": primary["media_type"],
            "content_size": primary["size"], "content_sha256": primary["sha256"],
            "content_reference": primary["reference"], "content_parts": json.dumps(listed)}


_NO_CONTENT = {c: None for c in _CONTENT_COLUMNS}


def _history(conn: Connection, row: dict, *, event: str, action: str, message_id: int,
             now: datetime, source_time: str | None) -> None:
    snapshot = _entry(row)
    conn.execute(insert(document_versions).values(
        document_number=row["document_number"], version=row["version"], event=event, action=action,
        message_id=message_id, at=now, source_time=source_time, status=row["status"],
        availability=row["availability"], content_kind=row["content_kind"],
        content_type=row["content_type"], content_size=row["content_size"],
        content_sha256=row["content_sha256"], content_reference=row["content_reference"],
        snapshot=json.dumps(snapshot, sort_keys=True, default=str)))


def _write(conn: Connection, number: str, values: dict, existing: dict | None) -> dict:
    if existing is None:
        conn.execute(insert(documents).values(document_number=number, **values))
    else:
        conn.execute(update(documents).where(documents.c.document_number == number).values(**values))
    row = _load(conn, number)
    assert row is not None
    return row


# ---------------------------------------------------------------------------------------------
# apply


def apply_documents(conn: Connection, docs: list[Document], message: Message, *, message_id: int,
                    now: datetime, settings: DocumentSettings) -> list[dict]:
    """Apply the documents of one MDM message in the caller's transaction (never commits).

    Returns the changes made, one dict per touched entry: ``{document_number, event, action,
    version, mrn}`` with action one of ``created``, ``updated``, ``status_changed``,
    ``addendum_created``, ``new_version``, ``replacement_created``, ``replaced``, ``cancelled``,
    ``ignored_older``. Raises ``Hold`` (unknown patient), ``PermanentError`` (unknown document,
    wrong patient, content too large), ``RequiredFieldMissing``, ``DataError`` (unreadable content)
    or ``HL7Error`` (unsupported event).
    """
    changes: list[dict] = []
    extracted: list[DocumentContent] | None = None
    for doc in docs:
        if doc.content is None and extracted is None:
            extracted = extract_content(message, max_bytes=settings.max_content_bytes)
        changes.extend(_apply_one(conn, doc, message, doc.content if doc.content is not None else extracted,
                                  message_id=message_id, now=now, settings=settings))
    return changes


def _apply_one(conn: Connection, doc: Document, message: Message, parts: list[DocumentContent] | None,
               *, message_id: int, now: datetime, settings: DocumentSettings) -> list[dict]:
    event = (doc.event or "").strip().upper()
    kind = EVENTS.get(event)
    if kind is None:
        raise HL7Error(f"unsupported document event {event or '(none)'}",
                       Location("MSH", 1, 9, component=2), code=errors.UNSUPPORTED_EVENT_CODE,
                       reason="unsupported_event")
    number = _text(doc.document_number)
    if not isinstance(number, str):
        raise RequiredFieldMissing("unique document number (TXA-12) is required", _loc("document_number"))
    given_mrn = _text(doc.mrn)
    if not isinstance(given_mrn, str):
        raise RequiredFieldMissing("patient identifier (PID-3) is required", _loc("mrn"))
    mrn = _resolve_mrn(conn, given_mrn)
    if mrn is None:
        raise Hold("unknown patient", reason="unknown_patient")
    parent_number = _text(doc.parent_document_number)
    parent_number = parent_number if isinstance(parent_number, str) else None

    source_time = hl7_time_key(message.header.message_time) if message is not None else None
    existing = _load(conn, number)
    if existing is not None:
        _check_patient(conn, existing, mrn, "document", _loc("document_number"))

    needs_existing = kind in ("status", "edit", "cancel") or (kind == "replace" and parent_number == number)
    if needs_existing and existing is None:
        raise PermanentError(f"{event}: document {number} is not in the index", _loc("document_number"),
                             code=errors.UNKNOWN_KEY_IDENTIFIER, reason="unknown_document")
    parent = None
    if kind in ("addendum", "replace") and parent_number != number:
        if parent_number is None:
            raise RequiredFieldMissing(f"{event}: parent document number (TXA-13) is required", _loc("parent"))
        parent = _load(conn, parent_number)
        if parent is None:
            raise PermanentError(f"{event}: parent document {parent_number} is not in the index",
                                 _loc("parent"), code=errors.UNKNOWN_KEY_IDENTIFIER, reason="unknown_document")
        _check_patient(conn, parent, mrn, "parent document", _loc("parent"))

    if existing is not None and source_time and existing["source_time"] and source_time < existing["source_time"]:
        # An older message than the one that made the current state: keep it as history only.
        _history(conn, existing, event=event, action="ignored_older", message_id=message_id, now=now,
                 source_time=source_time)
        return [{"document_number": number, "event": event, "action": "ignored_older",
                 "version": existing["version"], "mrn": existing["mrn"]}]

    values = _field_values(doc)
    values.update(mrn=mrn, last_event=event, source_time=source_time, message_id=message_id, updated_at=now)
    content = _store_parts(conn, parts or [], settings, now)
    changes: list[dict] = []

    if kind == "original":
        action = "updated" if existing else "created"
    elif kind == "status":
        action = "status_changed"
    elif kind == "cancel":
        action = "cancelled"
        values["availability"] = "CA"
    elif kind == "edit" or (kind == "replace" and parent_number == number):
        action = "new_version"
        values["version"] = existing["version"] + 1
        if not content:
            content = dict(_NO_CONTENT)  # T07: the edited text was not sent; older versions keep theirs
    elif kind == "addendum":
        action = "updated" if existing else "addendum_created"
        values["parent_document_number"] = parent_number
    else:  # replace
        action = "updated" if existing else "replacement_created"
        values["parent_document_number"] = parent_number

    values.update(content)
    if existing is None:
        values.update(version=1, created_at=now, deficiencies="[]")
        values.setdefault("parent_document_number", parent_number if kind in ("addendum", "replace") else None)
    row = _write(conn, number, values, existing)
    _history(conn, row, event=event, action=action, message_id=message_id, now=now, source_time=source_time)
    changes.append({"document_number": number, "event": event, "action": action,
                    "version": row["version"], "mrn": mrn})

    if kind == "replace" and parent is not None:
        prow = _write(conn, parent["document_number"],
                      {"availability": "OB", "replaced_by": number, "last_event": event,
                       "message_id": message_id, "updated_at": now}, parent)
        _history(conn, prow, event=event, action="replaced", message_id=message_id, now=now,
                 source_time=source_time)
        changes.append({"document_number": prow["document_number"], "event": event, "action": "replaced",
                        "version": prow["version"], "mrn": prow["mrn"], "replaced_by": number})

    _reevaluate(conn, row, settings, now)
    if parent is not None:
        _reevaluate_one(conn, _load(conn, parent["document_number"]), settings, now)
    return changes


def _check_patient(conn: Connection, row: dict, mrn: str, what: str, where: Location) -> None:
    if row["mrn"] == mrn:
        return
    if _resolve_mrn(conn, row["mrn"]) == mrn:
        return  # filed under a merged-away MRN not yet reassigned: same patient
    raise PermanentError(f"{what} {row['document_number']} belongs to another patient", where,
                         code=errors.UNKNOWN_KEY_IDENTIFIER, reason="invalid_value")


# ---------------------------------------------------------------------------------------------
# completeness


def _patient_rows(conn: Connection, mrn: str) -> list[dict]:
    return [dict(r) for r in conn.execute(select(documents).where(documents.c.mrn == mrn)).mappings()]


def _reevaluate(conn: Connection, row: dict, settings: DocumentSettings, now: datetime) -> None:
    """Re-check the changed document and the others of its visit (consent rules look across)."""
    rows = _patient_rows(conn, row["mrn"])
    for r in rows:
        if r["document_number"] == row["document_number"] or (
                row["visit_number"] and r["visit_number"] == row["visit_number"]):
            _reevaluate_one(conn, r, settings, now, rows)


def _reevaluate_one(conn: Connection, row: dict | None, settings: DocumentSettings, now: datetime,
                    rows: list[dict] | None = None) -> None:
    if row is None:
        return
    rows = rows if rows is not None else _patient_rows(conn, row["mrn"])
    entry = _entry(row)
    related = [_entry(r) for r in rows if r["document_number"] != row["document_number"]]
    findings = completeness.evaluate(settings.rules, entry, related)
    encoded = json.dumps(findings, sort_keys=True)
    if encoded != (row["deficiencies"] or "[]"):
        conn.execute(update(documents).where(documents.c.id == row["id"]).values(deficiencies=encoded))
    entry["deficiencies"] = findings
    completeness.replace_findings(conn, entry, findings, now)


# ---------------------------------------------------------------------------------------------
# merges


def reassign_patient(conn: Connection, from_mrn: str, to_mrn: str, now: datetime) -> int:
    """Move every document of ``from_mrn`` to ``to_mrn`` (a merge); returns how many moved.

    Rows keep the message that last changed them; the move itself is the chart's merge event.
    """
    n = conn.execute(update(documents).where(documents.c.mrn == from_mrn)
                     .values(mrn=to_mrn, updated_at=now)).rowcount
    completeness.reassign(conn, from_mrn, to_mrn)
    return n or 0


# ---------------------------------------------------------------------------------------------
# reads


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


def summaries_for(conn: Connection, mrn: str, now: datetime | None = None) -> list[dict]:
    """Short entries of one patient's documents for the chart record (cancelled ones included)."""
    keys = ("document_number", "parent_document_number", "type", "status", "availability", "cancelled",
            "obsolete", "activity_at", "origination_at", "author", "authenticated_at", "version",
            "content_type", "content_size", "deficiencies")
    q = select(documents).where(documents.c.mrn == mrn).order_by(documents.c.id)
    return [{k: e[k] for k in keys}
            for e in (_entry(dict(r), _now(now)) for r in conn.execute(q).mappings())]


def get_document(conn: Connection, number: str, now: datetime | None = None) -> dict | None:
    """One entry with ``versions``: its history, oldest first, each naming its message."""
    row = _load(conn, number)
    if row is None:
        return None
    entry = _entry(row, _now(now))
    q = select(document_versions).where(document_versions.c.document_number == number) \
        .order_by(document_versions.c.id)
    entry["versions"] = [
        {"version": v["version"], "event": v["event"], "action": v["action"], "message_id": v["message_id"],
         "at": _iso(v["at"]), "status": v["status"], "availability": v["availability"],
         "content_kind": v["content_kind"], "content_type": v["content_type"], "content_size": v["content_size"],
         "content_sha256": v["content_sha256"], "content_reference": v["content_reference"]}
        for v in conn.execute(q).mappings()]
    return entry


def list_documents(conn: Connection, mrn: str | None = None, type: str | None = None,
                   status: str | None = None, limit: int = 50, offset: int = 0,
                   now: datetime | None = None) -> list[dict]:
    """Index entries, newest first, filtered by MRN, type and status (case-insensitive codes)."""
    q = select(documents)
    if mrn:
        q = q.where(documents.c.mrn == mrn)
    if type:
        q = q.where(func.upper(documents.c.type) == type.upper())
    if status:
        q = q.where(or_(func.upper(documents.c.status) == status.upper(),
                        func.upper(documents.c.availability) == status.upper()))
    q = q.order_by(documents.c.id.desc()).limit(max(0, min(limit, 500))).offset(max(0, offset))
    return [_entry(dict(r), _now(now)) for r in conn.execute(q).mappings()]


def get_content(conn: Connection, number: str, settings: DocumentSettings, version: int | None = None,
                part: int | None = None) -> tuple[bytes, str] | None:
    """The bytes of a document (current version, or ``version``) and their media type.

    ``part`` (1-based) picks one of ``content_parts``; by default the primary part. None when the
    document, version or content is unknown, or the content is only a reference (RP).
    """
    row = _load(conn, number)
    if row is None:
        return None
    if version is None or version == row["version"]:
        parts = json.loads(row["content_parts"]) if row["content_parts"] else []
        primary = {"kind": row["content_kind"], "media_type": row["content_type"], "sha256": row["content_sha256"]}
    else:
        q = (select(document_versions.c.snapshot).where(document_versions.c.document_number == number,
                                                        document_versions.c.version == version,
                                                        document_versions.c.action != "ignored_older")
             .order_by(document_versions.c.id.desc()).limit(1))
        snap = conn.execute(q).scalar()
        if snap is None:
            return None
        s = json.loads(snap)
        parts = s.get("content_parts") or []
        primary = {"kind": s.get("content_kind"), "media_type": s.get("content_type"),
                   "sha256": s.get("content_sha256")}
    chosen = primary
    if part is not None:
        if not 1 <= part <= len(parts):
            return None
        chosen = parts[part - 1]
    if not chosen.get("sha256"):
        return None
    data = settings.store().get(conn, chosen["sha256"])
    if data is None:
        return None
    media = chosen.get("media_type") or "application/octet-stream"
    if chosen.get("kind") == "text" and "charset" not in media:
        media += "; charset=utf-8"
    return data, media
