"""Scan intake: a received file journalled by its SHA-256 before it is acknowledged.

:func:`receive` runs in the caller's transaction (never commits): the bytes go to the content
store (like a document's content), a ``scan_batches`` row records the file, and the caller
acknowledges (moves the file out of the drop folder, answers the upload) only after its commit.
The same bytes again are the batch already kept: ``seen`` goes up, nothing else changes, so a
process that dies between the commit and the move re-sees the file harmlessly. A file that
cannot be a batch is kept too, as ``rejected`` with the reason in words.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from interface.store.content import ContentStore, sha256_hex
from interface.store.scan_pages import BadScan, normalize
from interface.store.scan_schema import scan_batches

SOURCES = ("folder", "upload", "api")


def _insert(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def receive(
    conn: Connection,
    store: ContentStore,
    data: bytes,
    *,
    channel: str,
    source: str,
    filename: str | None,
    now: datetime,
    user: str | None = None,
) -> dict:
    """The batch row for ``data`` (``duplicate`` True when these bytes were already received)."""
    sha = sha256_hex(data)
    known = by_sha(conn, sha)
    if known is not None:
        conn.execute(
            update(scan_batches).where(scan_batches.c.id == known["id"]).values(seen=known["seen"] + 1)
        )
        return {**known, "seen": known["seen"] + 1, "duplicate": True}
    values: dict = dict(
        sha256=sha,
        channel=channel,
        source=source,
        filename=(filename or "")[-250:] or None,
        size=len(data),
        seen=1,
        received_at=now,
        received_by=user,
    )
    try:
        norm = normalize(data)
        pdf_sha = sha if norm.pdf is data else store.put(conn, norm.pdf, now)
        values.update(status="received", media_type=norm.media_type, pages=norm.pages, pdf_sha256=pdf_sha)
    except BadScan as exc:
        values.update(status="rejected", reason=exc.reason, media_type=exc.media_type, processed_at=now)
    store.put(conn, data, now)  # kept as received, good or bad
    # Two engine processes taking one file at once: the second insert is a no-op.
    conn.execute(
        _insert(conn)(scan_batches).values(**values).on_conflict_do_nothing(index_elements=["sha256"])
    )
    row = by_sha(conn, sha)
    assert row is not None
    return {**row, "duplicate": False}


def by_sha(conn: Connection, sha: str) -> dict | None:
    row = conn.execute(select(scan_batches).where(scan_batches.c.sha256 == sha)).mappings().first()
    return dict(row) if row else None


def batch(conn: Connection, batch_id: int) -> dict | None:
    row = conn.execute(select(scan_batches).where(scan_batches.c.id == batch_id)).mappings().first()
    return dict(row) if row else None


def batches(conn: Connection, *, status: str | None = None, limit: int = 100) -> list[dict]:
    q = select(scan_batches).order_by(scan_batches.c.id.desc()).limit(limit)
    if status:
        q = q.where(scan_batches.c.status == status)
    return [dict(r) for r in conn.execute(q).mappings()]
