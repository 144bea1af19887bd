"""Queries of the delivery tables (``roi_links``, ``roi_outbox`` in :mod:`interface.store.roi_schema`):
rows in, plain dicts out (times aware, UTC), in the caller's transaction. What they mean is
:mod:`interface.desk.roi_delivery`'s."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection

from interface.store.roi import _row
from interface.store.roi_schema import roi_links, roi_outbox


def _locked(conn: Connection, q):
    return q.with_for_update() if conn.dialect.name == "postgresql" else q


def insert_link(conn: Connection, values: dict) -> int:
    return int(conn.execute(insert(roi_links).values(**values).returning(roi_links.c.id)).scalar_one())


def get_link(conn: Connection, link_id: int, *, for_update: bool = False) -> dict | None:
    q = select(roi_links).where(roi_links.c.id == link_id)
    row = conn.execute(_locked(conn, q) if for_update else q).first()
    return _row(row) if row is not None else None


def link_by_hash(conn: Connection, token_sha256: str) -> dict | None:
    q = select(roi_links).where(roi_links.c.token_sha256 == token_sha256)
    row = conn.execute(_locked(conn, q)).first()
    return _row(row) if row is not None else None


def update_link(conn: Connection, link_id: int, values: dict) -> None:
    conn.execute(update(roi_links).where(roi_links.c.id == link_id).values(**values))


def count_download(conn: Connection, link_id: int, now: datetime) -> None:
    conn.execute(
        update(roi_links)
        .where(roi_links.c.id == link_id)
        .values(downloads=roi_links.c.downloads + 1, last_download_at=now)
    )


def links_for(conn: Connection, request_id: int) -> list[dict]:
    q = select(roi_links).where(roi_links.c.request_id == request_id).order_by(roi_links.c.id)
    return [_row(r) for r in conn.execute(q)]


def insert_email(conn: Connection, values: dict) -> int:
    return int(conn.execute(insert(roi_outbox).values(**values).returning(roi_outbox.c.id)).scalar_one())


def get_email(conn: Connection, email_id: int, *, for_update: bool = False) -> dict | None:
    q = select(roi_outbox).where(roi_outbox.c.id == email_id)
    row = conn.execute(_locked(conn, q) if for_update else q).first()
    return _row(row) if row is not None else None


def update_email(conn: Connection, email_id: int, values: dict) -> None:
    conn.execute(update(roi_outbox).where(roi_outbox.c.id == email_id).values(**values))


def emails_for(conn: Connection, request_id: int) -> list[dict]:
    q = select(roi_outbox).where(roi_outbox.c.request_id == request_id).order_by(roi_outbox.c.id)
    return [_row(r) for r in conn.execute(q)]


def outbox(conn: Connection, statuses: list[str] | None = None, limit: int = 500) -> list[dict]:
    q = select(roi_outbox)
    if statuses:
        q = q.where(roi_outbox.c.status.in_(statuses))
    return [_row(r) for r in conn.execute(q.order_by(roi_outbox.c.id).limit(limit))]


def due_emails(conn: Connection, now: datetime, max_attempts: int, stale: timedelta) -> list[int]:
    """Ids of the e-mails to try now: pending, failed and due again (fewer than ``max_attempts``),
    or left ``sending`` longer than ``stale`` (a sender that died mid-way)."""
    q = (
        select(roi_outbox.c.id)
        .where(
            or_(
                roi_outbox.c.status == "pending",
                and_(
                    roi_outbox.c.status == "failed",
                    roi_outbox.c.attempts < max_attempts,
                    or_(roi_outbox.c.next_attempt_at.is_(None), roi_outbox.c.next_attempt_at <= now),
                ),
                and_(roi_outbox.c.status == "sending", roi_outbox.c.last_attempt_at < now - stale),
            )
        )
        .order_by(roi_outbox.c.id)
        .limit(200)
    )
    return [int(i) for i in conn.execute(q).scalars()]
