"""Reading the document index: summaries per patient, one document with its
versions, lists, and the content bytes.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from interface.store import document_ids
from interface.store.document_schema import document_versions, documents
from interface.store.documents import DocumentSettings, _entry, _iso, _now


def summaries_for(conn: Connection, mrn: str, now: datetime | None = None) -> list[dict]:
    """Short entries of one patient's documents for the chart record (cancelled ones included)."""
    keys = (
        "document_number",
        "namespace",
        "parent_document_number",
        "replaces",
        "replaced_by",
        "type",
        "status",
        "availability",
        "cancelled",
        "obsolete",
        "activity_at",
        "origination_at",
        "author",
        "authenticated_at",
        "version",
        "content_type",
        "content_size",
        "deficiencies",
    )
    q = select(documents).where(documents.c.mrn == mrn).order_by(documents.c.id)
    return [{k: e[k] for k in keys} for e in (_entry(dict(r), _now(now)) for r in conn.execute(q).mappings())]


def get_document(
    conn: Connection, number: str, now: datetime | None = None, namespace: str | None = None
) -> dict | None:
    """One entry with ``versions``: its history, oldest first, each naming its message.

    ``namespace`` (namespace ID or universal ID) picks among documents sharing the number; without
    it an ambiguous number raises :class:`document_ids.AmbiguousDocument`."""
    row = document_ids.match(conn, number, namespace)
    if row is None:
        return None
    entry = _entry(row, _now(now))
    q = (
        select(document_versions)
        .where(document_versions.c.document_id == row["id"])
        .order_by(document_versions.c.id)
    )
    entry["versions"] = [
        {
            "version": v["version"],
            "event": v["event"],
            "action": v["action"],
            "message_id": v["message_id"],
            "at": _iso(v["at"]),
            "status": v["status"],
            "availability": v["availability"],
            "content_kind": v["content_kind"],
            "content_type": v["content_type"],
            "content_size": v["content_size"],
            "content_sha256": v["content_sha256"],
            "content_reference": v["content_reference"],
        }
        for v in conn.execute(q).mappings()
    ]
    return entry


def list_documents(
    conn: Connection,
    mrn: str | None = None,
    type: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
    namespace: str | None = None,
) -> list[dict]:
    """Index entries, newest first, filtered by MRN, type, status (case-insensitive codes) and
    namespace (namespace ID or universal ID, exactly)."""
    q = select(documents)
    if mrn:
        q = q.where(documents.c.mrn == mrn)
    if type:
        q = q.where(func.upper(documents.c.type) == type.upper())
    if status:
        q = q.where(
            or_(
                func.upper(documents.c.status) == status.upper(),
                func.upper(documents.c.availability) == status.upper(),
            )
        )
    if namespace:
        q = q.where(documents.c.authority == namespace)
    q = q.order_by(documents.c.id.desc()).limit(max(0, min(limit, 500))).offset(max(0, offset))
    return [_entry(dict(r), _now(now)) for r in conn.execute(q).mappings()]


def get_content(
    conn: Connection,
    number: str,
    settings: DocumentSettings,
    version: int | None = None,
    part: int | None = None,
    *,
    namespace: str | None = None,
    raw: bool = False,
) -> tuple[bytes, str] | None:
    """The bytes of a document (current version, or ``version``) and their media type.

    ``part`` (1-based) picks one of ``content_parts``; by default the primary part. ``raw`` picks a
    text part's formatted text as sent (FT escapes kept; the rendered text when they are the same).
    None when the document, version or content is unknown, the content is only a reference (RP),
    or the document is cancelled and no ``version`` is asked for (T11: the cancelled content is
    not current; its versions stay readable by number). Ambiguous numbers: as :func:`get_document`.
    """
    row = document_ids.match(conn, number, namespace)
    if row is None:
        return None
    if version is None and (row["availability"] or "").upper() == "CA":
        return None
    if version is None or version == row["version"]:
        parts = json.loads(row["content_parts"]) if row["content_parts"] else []
        primary = {
            "kind": row["content_kind"],
            "media_type": row["content_type"],
            "sha256": row["content_sha256"],
        }
    else:
        q = (
            select(document_versions.c.snapshot)
            .where(
                document_versions.c.document_id == row["id"],
                document_versions.c.version == version,
                document_versions.c.action != "ignored_older",
            )
            .order_by(document_versions.c.id.desc())
            .limit(1)
        )
        snap = conn.execute(q).scalar()
        if snap is None:
            return None
        s = json.loads(snap)
        parts = s.get("content_parts") or []
        primary = {
            "kind": s.get("content_kind"),
            "media_type": s.get("content_type"),
            "sha256": s.get("content_sha256"),
        }
    chosen = next(
        (p for p in parts if p.get("sha256") == primary["sha256"] and p.get("kind") == primary["kind"]),
        primary,
    )
    if part is not None:
        if not 1 <= part <= len(parts):
            return None
        chosen = parts[part - 1]
    if raw:
        if chosen.get("kind") != "text":
            return None
        if chosen.get("raw_sha256"):
            chosen = {**chosen, "sha256": chosen["raw_sha256"]}
    if not chosen.get("sha256"):
        return None
    data = settings.store().get(conn, chosen["sha256"])
    if data is None:
        return None
    media = chosen.get("media_type") or "application/octet-stream"
    if chosen.get("kind") == "text" and "charset" not in media:
        media += "; charset=utf-8"
    return data, media


def version_snapshots(conn: Connection, number: str, namespace: str | None = None) -> list[dict] | None:
    """The document as each applied message left it, oldest first: the entry's snapshot with
    ``message_id`` (that message) and ``updated_at`` (when it was applied); messages ignored as
    older than the entry are left out. None when the document is unknown; ambiguous numbers: as
    :func:`get_document`."""
    row = document_ids.match(conn, number, namespace)
    if row is None:
        return None
    q = (
        select(document_versions.c.message_id, document_versions.c.at, document_versions.c.snapshot)
        .where(document_versions.c.document_id == row["id"], document_versions.c.action != "ignored_older")
        .order_by(document_versions.c.id)
    )
    out = []
    for v in conn.execute(q):
        snap = json.loads(v.snapshot)
        snap["message_id"], snap["updated_at"] = v.message_id, _iso(v.at)
        out.append(snap)
    return out
