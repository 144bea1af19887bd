"""The document index: apply MDM document records, and read entries, history and content.

Store functions take a :class:`sqlalchemy.engine.Connection` inside the caller's transaction and
never commit. What each event does (HL7 v2.5.1 chapter 9, trigger events 9.5.1-9.5.11; TXA 9.6.1):

========  ===========================================================================
T01/T02   original: creates the entry (version 1). A number already in the index is refused
          (205 at TXA-12): a new document never overwrites a stored one (a resend of the same
          message is a duplicate before it gets here)
T03/T04   status change (T04 with content): updates the entry, same version (T04 whose content
          differs from the stored content: a new version, the old content kept as the earlier
          one); unknown number -> 204 at TXA-12
T05/T06   addendum: a new entry whose parent is TXA-13 (the parent must be known: 204 at
          TXA-13); a number already in the index -> 205 at TXA-12
T07/T08   edit: for a known TXA-12, a new version of the same document (T07 without content:
          the new version has none; earlier versions keep theirs). A new TXA-12 with the edited
          document in TXA-13 is an edit with replacement: the new entry ``replaces`` the parent,
          which becomes obsolete (``OB``, ``replaced_by``). Unknown TXA-12 without TXA-13 -> 204
          at TXA-12; unknown TXA-13 -> 204 at TXA-13
T09/T10   replacement: a new entry replacing TXA-13 (required; unknown -> 204 at TXA-13); the
          parent becomes obsolete (availability ``OB``, ``replaced_by`` set) and stays visible.
          TXA-12 equal to TXA-13 is a new version of that document; another known TXA-12 -> 205
T11       cancel: availability ``CA``; the entry stays visible as cancelled, its content is no
          longer served as current (``get_content`` without ``version``), every version stays
          readable by number
========  ===========================================================================

Document numbers are EI: number and authority (namespace, else universal ID), matched as
``document_ids`` says; two documents with one number in two namespaces are two entries.

Ordering: messages for one patient arrive in order (the queue's promise), so an unknown document
on T03/T04/T07/T08/T11 (or an unknown parent on T05/T06/T08/T09/T10) is a
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

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from interface.hl7 import errors
from interface.hl7.errors import HL7Error, Hold, Location, PermanentError, RequiredFieldMissing
from interface.hl7.message import Message
from interface.mapping.records import CLEAR, Document, DocumentContent, Person
from interface.rules import completeness
from interface.store import deficiencies, document_ids
from interface.store.content import DEFAULT_MAX_BYTES, ContentStore, extract_content, part_bytes
from interface.store.document_ids import AmbiguousDocument, DocumentId
from interface.store.document_schema import document_versions, documents


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


EVENTS = {
    "T01": "original",
    "T02": "original",
    "T03": "status",
    "T04": "status",
    "T05": "addendum",
    "T06": "addendum",
    "T07": "edit",
    "T08": "edit",
    "T09": "replace",
    "T10": "replace",
    "T11": "cancel",
}

_SCALARS = (
    "visit_number",
    "type",
    "presentation",
    "status",
    "activity_at",
    "origination_at",
    "transcribed_at",
    "edited_at",
    "authenticated_at",
    "confidentiality",
    "availability",
    "storage_status",
    "change_reason",
    "unique_document_file_name",
    "placer_order",
    "filler_order",
)
_PERSONS = ("author", "transcriptionist", "authenticated_by")
_CONTENT_COLUMNS = (
    "content_kind",
    "content_type",
    "content_size",
    "content_sha256",
    "content_reference",
    "content_parts",
)
_TXA = {
    "visit_number": ("PV1", 19),
    "document_number": ("TXA", 12),
    "parent": ("TXA", 13),
    "mrn": ("PID", 3),
    "event": ("MSH", 9),
}


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
    digits = (m.group(1) + "0101000000"[len(m.group(1)) - 4 :]) if len(m.group(1)) < 14 else m.group(1)
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
        from interface.store.chart import resolve_mrn  # lazily: the chart store sits beside us, not below
    except ImportError as exc:
        if getattr(exc, "name", None) not in ("interface.store.chart", None):
            raise
        return _resolve_without_chart(conn, mrn)
    return resolve_mrn(conn, mrn)


def _resolve_without_chart(conn: Connection, mrn: str) -> str | None:
    # No chart store in this build: fall back to its table if present, else accept the MRN
    # (a documents-only set-up has no patient registry to check against).
    from interface.store.schema import metadata

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


def _find(conn: Connection, did: DocumentId, where: Location) -> dict | None:
    """The stored row ``did`` names; an ambiguous bare number is a 204 at ``where``."""
    try:
        return document_ids.match(conn, did.number, did.authority)
    except AmbiguousDocument as exc:
        raise PermanentError(
            str(exc), where, code=errors.UNKNOWN_KEY_IDENTIFIER, reason="unknown_document"
        ) from None


def _ident(doc: Document) -> tuple[DocumentId | None, DocumentId | None]:
    """TXA-12 and TXA-13 as EIs (None when the number is absent)."""

    def s(v: Any) -> str | None:
        v = _text(v)
        return v if isinstance(v, str) else None

    number, parent = s(doc.document_number), s(doc.parent_document_number)
    did = (
        DocumentId(
            number, s(doc.document_namespace), s(doc.document_universal_id), s(doc.document_universal_id_type)
        )
        if number
        else None
    )
    pid = DocumentId(parent, s(doc.parent_namespace), s(doc.parent_universal_id)) if parent else None
    return did, pid


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
        "namespace": row["namespace"],
        "universal_id": row["universal_id"],
        "universal_id_type": row["universal_id_type"],
        "parent_document_number": row["parent_document_number"],
        "parent_namespace": row["parent_authority"] or None,
        "replaces": row["replaces"],
        "replaces_namespace": row["replaces_authority"] or None,
        "replaced_by": row["replaced_by"],
        "replaced_by_namespace": row["replaced_by_authority"] or None,
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
        "origin": row.get("origin"),
        "message_id": row["message_id"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }
    if now is not None:
        out["deficiencies"] = completeness.visible(out["deficiencies"], now)
    return out


def _store_parts(
    conn: Connection, parts: list[DocumentContent], settings: DocumentSettings, now: datetime
) -> dict[str, Any]:
    """Put every part in the content store; the content columns for the entry (primary part first:
    the first binary part, else the text, else the first reference)."""
    if not parts:
        return {}
    store = settings.store()
    listed = []
    for p in parts:
        data = part_bytes(p)
        if data is None:
            listed.append(
                {
                    "kind": p.kind,
                    "media_type": p.media_type,
                    "size": None,
                    "sha256": None,
                    "reference": p.reference,
                }
            )
            continue
        sha = store.put(conn, data, now)
        item = {
            "kind": p.kind,
            "media_type": p.media_type or "application/octet-stream",
            "size": len(data),
            "sha256": sha,
            "reference": None,
        }
        if p.kind == "text" and p.raw_text is not None and p.raw_text != p.text:
            raw = p.raw_text.encode("utf-8")  # FT as sent, escapes kept (?raw=true serves it)
            item.update(raw_sha256=store.put(conn, raw, now), raw_size=len(raw))
        listed.append(item)
    primary = (
        next((x for x in listed if x["kind"] == "binary"), None)
        or next((x for x in listed if x["kind"] == "text"), None)
        or listed[0]
    )
    return {
        "content_kind": primary["kind"],
        "content_type": primary["media_type"],
        "content_size": primary["size"],
        "content_sha256": primary["sha256"],
        "content_reference": primary["reference"],
        "content_parts": json.dumps(listed),
    }


_NO_CONTENT = {c: None for c in _CONTENT_COLUMNS}


def _history(
    conn: Connection,
    row: dict,
    *,
    event: str,
    action: str,
    message_id: int,
    now: datetime,
    source_time: str | None,
) -> None:
    snapshot = _entry(row)
    conn.execute(
        insert(document_versions).values(
            document_id=row["id"],
            document_number=row["document_number"],
            version=row["version"],
            event=event,
            action=action,
            message_id=message_id,
            at=now,
            source_time=source_time,
            status=row["status"],
            availability=row["availability"],
            content_kind=row["content_kind"],
            content_type=row["content_type"],
            content_size=row["content_size"],
            content_sha256=row["content_sha256"],
            content_reference=row["content_reference"],
            snapshot=json.dumps(snapshot, sort_keys=True, default=str),
        )
    )


def _write(conn: Connection, values: dict, existing: dict | None) -> dict:
    if existing is None:
        row_id = conn.execute(insert(documents).values(**values)).inserted_primary_key[0]
    else:
        row_id = existing["id"]
        conn.execute(update(documents).where(documents.c.id == row_id).values(**values))
    row = document_ids.load(conn, row_id)
    assert row is not None
    return row


def _unknown(event: str, what: str, did: DocumentId, where: Location) -> PermanentError:
    return PermanentError(
        f"{event}: {what} {did.label()} is not in the index",
        where,
        code=errors.UNKNOWN_KEY_IDENTIFIER,
        reason="unknown_document",
    )


def _duplicate(event: str, did: DocumentId) -> PermanentError:
    return PermanentError(
        f"{event}: document {did.label()} is already in the index; a new document "
        "needs a new unique document number",
        _loc("document_number"),
        code=errors.DUPLICATE_KEY_IDENTIFIER,
        reason="duplicate_document",
    )


# ---------------------------------------------------------------------------------------------
# apply


def apply_documents(
    conn: Connection,
    docs: list[Document],
    message: Message | None,
    *,
    message_id: int,
    now: datetime,
    settings: DocumentSettings,
) -> list[dict]:
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
        if doc.content is None and extracted is None and message is not None:
            extracted = extract_content(message, max_bytes=settings.max_content_bytes)
        changes.extend(
            _apply_one(
                conn,
                doc,
                message,
                doc.content if doc.content is not None else extracted,
                message_id=message_id,
                now=now,
                settings=settings,
            )
        )
    return changes


def _apply_one(
    conn: Connection,
    doc: Document,
    message: Message | None,
    parts: list[DocumentContent] | None,
    *,
    message_id: int,
    now: datetime,
    settings: DocumentSettings,
) -> list[dict]:
    event = (doc.event or "").strip().upper()
    kind = EVENTS.get(event)
    if kind is None:
        raise HL7Error(
            f"unsupported document event {event or '(none)'}",
            Location("MSH", 1, 9, component=2),
            code=errors.UNSUPPORTED_EVENT_CODE,
            reason="unsupported_event",
        )
    did, pid = _ident(doc)
    if did is None:
        raise RequiredFieldMissing("unique document number (TXA-12) is required", _loc("document_number"))
    given_mrn = _text(doc.mrn)
    if not isinstance(given_mrn, str):
        raise RequiredFieldMissing("patient identifier (PID-3) is required", _loc("mrn"))
    mrn = _resolve_mrn(conn, given_mrn)
    if mrn is None:
        raise Hold("unknown patient", reason="unknown_patient")

    source_time = hl7_time_key(message.header.message_time) if message is not None else None
    existing = _find(conn, did, _loc("document_number"))
    if existing is not None:
        _check_patient(conn, existing, mrn, "document", _loc("document_number"))
    mode, parent = _mode(conn, event, kind, did, pid, existing)
    if parent is not None:
        _check_patient(conn, parent, mrn, "parent document", _loc("parent"))

    if (
        existing is not None
        and source_time
        and existing["source_time"]
        and source_time < existing["source_time"]
    ):
        # An older message than the one that made the current state: keep it as history only.
        _history(
            conn,
            existing,
            event=event,
            action="ignored_older",
            message_id=message_id,
            now=now,
            source_time=source_time,
        )
        return [
            {
                "document_number": did.number,
                "event": event,
                "action": "ignored_older",
                "version": existing["version"],
                "mrn": existing["mrn"],
            }
        ]

    values = _field_values(doc)
    values.update(mrn=mrn, last_event=event, source_time=source_time, message_id=message_id, updated_at=now)
    content = _store_parts(conn, parts or [], settings, now)
    if existing is not None and did.authority and not existing["authority"]:
        # stored without a namespace (before namespaces were kept): it learns the sender's
        values.update(
            namespace=did.namespace,
            universal_id=did.universal_id,
            universal_id_type=did.universal_id_type,
            authority=did.authority,
        )

    if mode == "version":
        action = "new_version"
        values["version"] = existing["version"] + 1
        if not content:
            content = dict(_NO_CONTENT)  # T07/T09: the edited text was not sent; older versions keep theirs
    elif mode == "update":
        action = "cancelled" if kind == "cancel" else "status_changed"
        if kind == "cancel":
            values["availability"] = "CA"
        elif (
            content.get("content_sha256")
            and existing["content_sha256"]
            and content["content_sha256"] != existing["content_sha256"]
        ):
            values["version"] = existing["version"] + 1  # T04 with other content: the old stays readable
    else:  # a new entry
        action = {"original": "created", "addendum": "addendum_created"}.get(kind, "replacement_created")
        values.update(
            document_number=did.number,
            namespace=did.namespace,
            universal_id=did.universal_id,
            universal_id_type=did.universal_id_type,
            authority=did.authority,
            version=1,
            created_at=now,
            deficiencies="[]",
            parent_document_number=None,
        )
        if parent is not None:
            values.update(
                parent_document_number=parent["document_number"], parent_authority=parent["authority"]
            )
        if mode == "replace":
            values.update(replaces=parent["document_number"], replaces_authority=parent["authority"])

    values.update(content)
    row = _write(conn, values, existing)
    _history(conn, row, event=event, action=action, message_id=message_id, now=now, source_time=source_time)
    changes = [
        {
            "document_number": did.number,
            "event": event,
            "action": action,
            "version": row["version"],
            "mrn": mrn,
        }
    ]

    if mode == "replace":
        prow = _write(
            conn,
            {
                "availability": "OB",
                "replaced_by": row["document_number"],
                "replaced_by_authority": row["authority"],
                "last_event": event,
                "message_id": message_id,
                "updated_at": now,
            },
            parent,
        )
        _history(
            conn,
            prow,
            event=event,
            action="replaced",
            message_id=message_id,
            now=now,
            source_time=source_time,
        )
        changes.append(
            {
                "document_number": prow["document_number"],
                "event": event,
                "action": "replaced",
                "version": prow["version"],
                "mrn": prow["mrn"],
                "replaced_by": did.number,
            }
        )

    _reevaluate(conn, row, settings, now)
    if parent is not None:
        _reevaluate_one(conn, document_ids.load(conn, parent["id"]), settings, now)
    return changes


def _mode(
    conn: Connection, event: str, kind: str, did: DocumentId, pid: DocumentId | None, existing: dict | None
) -> tuple[str, dict | None]:
    """What the event does to the index (module docstring): ``create``, ``update`` (status,
    cancel), ``version`` (a new version of ``existing``) or ``replace`` (a new entry making the
    parent obsolete); and the parent row (addenda, replacements). Raises for unknown or reused
    numbers."""

    def parent_row() -> dict:
        if pid is None:
            raise RequiredFieldMissing(
                f"{event}: parent document number (TXA-13) is required", _loc("parent")
            )
        row = _find(conn, pid, _loc("parent"))
        if row is None:
            raise _unknown(event, "parent document", pid, _loc("parent"))
        return row

    if kind == "original":
        if existing is not None:
            raise _duplicate(event, did)
        return "create", None
    if kind in ("status", "cancel"):
        if existing is None:
            raise _unknown(event, "document", did, _loc("document_number"))
        return "update", None
    if kind == "addendum":
        parent = parent_row()
        if existing is not None:
            raise _duplicate(event, did)
        return "create", parent
    if kind == "edit":
        if existing is not None:
            return "version", None  # TXA-13 here is the document's own parent (an edited addendum)
        if pid is None or pid.number == did.number:
            raise _unknown(event, "document", did, _loc("document_number"))
        return "replace", parent_row()
    parent = parent_row()  # replace
    if existing is not None:
        if existing["id"] == parent["id"]:
            return "version", None  # the sender kept the number: a new version of it
        raise _duplicate(event, did)
    return "replace", parent


def _check_patient(conn: Connection, row: dict, mrn: str, what: str, where: Location) -> None:
    if row["mrn"] == mrn:
        return
    if _resolve_mrn(conn, row["mrn"]) == mrn:
        return  # filed under a merged-away MRN not yet reassigned: same patient
    raise PermanentError(
        f"{what} {row['document_number']} belongs to another patient",
        where,
        code=errors.UNKNOWN_KEY_IDENTIFIER,
        reason="invalid_value",
    )


# ---------------------------------------------------------------------------------------------
# completeness


def _patient_rows(conn: Connection, mrn: str) -> list[dict]:
    return [dict(r) for r in conn.execute(select(documents).where(documents.c.mrn == mrn)).mappings()]


def _reevaluate(conn: Connection, row: dict, settings: DocumentSettings, now: datetime) -> None:
    """Re-check the changed document and the others of its visit (consent rules look across)."""
    rows = _patient_rows(conn, row["mrn"])
    for r in rows:
        if r["id"] == row["id"] or (row["visit_number"] and r["visit_number"] == row["visit_number"]):
            _reevaluate_one(conn, r, settings, now, rows)


def _reevaluate_one(
    conn: Connection,
    row: dict | None,
    settings: DocumentSettings,
    now: datetime,
    rows: list[dict] | None = None,
) -> None:
    if row is None:
        return
    rows = rows if rows is not None else _patient_rows(conn, row["mrn"])
    entry = _entry(row)
    related = [_entry(r) for r in rows if r["id"] != row["id"]]
    findings = completeness.evaluate(settings.rules, entry, related)
    encoded = json.dumps(findings, sort_keys=True)
    if encoded != (row["deficiencies"] or "[]"):
        conn.execute(update(documents).where(documents.c.id == row["id"]).values(deficiencies=encoded))
    entry["deficiencies"] = findings
    deficiencies.replace_findings(conn, entry, findings, now, document_id=row["id"])


# ---------------------------------------------------------------------------------------------
# merges


def reassign_patient(conn: Connection, from_mrn: str, to_mrn: str, now: datetime) -> int:
    """Move every document of ``from_mrn`` to ``to_mrn`` (a merge); returns how many moved.

    Rows keep the message that last changed them; the move itself is the chart's merge event.
    """
    n = conn.execute(
        update(documents).where(documents.c.mrn == from_mrn).values(mrn=to_mrn, updated_at=now)
    ).rowcount
    deficiencies.reassign(conn, from_mrn, to_mrn)
    return n or 0


# ---------------------------------------------------------------------------------------------
# reads


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
