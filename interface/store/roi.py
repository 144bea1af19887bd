"""Queries of the release-of-information tables (:mod:`interface.store.roi_schema`): rows in,
plain dicts out (JSON columns decoded, dates as ``date``), in the caller's transaction. The
workflow and its checks are :mod:`interface.desk.roi`'s."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Any, Iterable

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from interface.store.roi_schema import (
    roi_authorizations,
    roi_disclosures,
    roi_events,
    roi_packets,
    roi_requests,
)

_JSON = {"identity_checks", "scope", "checklist", "categories", "manifest"}


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _row(row: Any) -> dict:
    out = {}
    for k, v in row._mapping.items():
        if k in _JSON and isinstance(v, str):
            v = json.loads(v)
        out[k] = _utc(v)
    return out


def _encode(values: dict) -> dict:
    return {
        k: json.dumps(v, sort_keys=True) if k in _JSON and v is not None else v for k, v in values.items()
    }


def _insert(conn: Connection, table, values: dict) -> int:
    result = conn.execute(insert(table).values(**_encode(values)).returning(table.c.id))
    return int(result.scalar_one())


# -- requests and their events ----------------------------------------------------------------


def insert_request(conn: Connection, values: dict) -> int:
    return _insert(conn, roi_requests, values)


def update_request(conn: Connection, request_id: int, values: dict) -> None:
    conn.execute(update(roi_requests).where(roi_requests.c.id == request_id).values(**_encode(values)))


def get_request(conn: Connection, request_id: int, *, for_update: bool = False) -> dict | None:
    q = select(roi_requests).where(roi_requests.c.id == request_id)
    if for_update and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    return _row(row) if row is not None else None


def list_requests(
    conn: Connection,
    *,
    statuses: Iterable[str] | None = None,
    mrn: str | None = None,
    due_before: date | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[dict]:
    """Requests, soonest due first (then oldest)."""
    q = select(roi_requests)
    if statuses:
        q = q.where(roi_requests.c.status.in_(list(statuses)))
    if mrn:
        q = q.where(roi_requests.c.mrn == mrn)
    if due_before is not None:
        q = q.where(roi_requests.c.due_on < due_before)
    q = q.order_by(roi_requests.c.due_on, roi_requests.c.id).limit(max(0, min(limit, 1000))).offset(offset)
    return [_row(r) for r in conn.execute(q)]


def count_by_status(conn: Connection) -> dict[str, int]:
    q = select(roi_requests.c.status, func.count()).group_by(roi_requests.c.status)
    return {s: n for s, n in conn.execute(q).all()}


def overdue(conn: Connection, today: date, statuses: Iterable[str]) -> list[dict]:
    """Open requests due before ``today``: ``{id, due_on, status, received_on}`` only (no PHI)."""
    q = (
        select(roi_requests.c.id, roi_requests.c.due_on, roi_requests.c.status, roi_requests.c.received_on)
        .where(roi_requests.c.status.in_(list(statuses)), roi_requests.c.due_on < today)
        .order_by(roi_requests.c.due_on, roi_requests.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(q)]


def add_event(
    conn: Connection,
    request_id: int,
    *,
    at: datetime,
    user: str,
    action: str,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
) -> None:
    conn.execute(
        insert(roi_events).values(
            request_id=request_id,
            at=at,
            user=user,
            action=action,
            from_status=from_status,
            to_status=to_status,
            note=note,
        )
    )


def events(conn: Connection, request_id: int) -> list[dict]:
    q = select(roi_events).where(roi_events.c.request_id == request_id).order_by(roi_events.c.id)
    return [_row(r) for r in conn.execute(q)]


# -- authorizations ---------------------------------------------------------------------------


def insert_authorization(conn: Connection, values: dict) -> int:
    return _insert(conn, roi_authorizations, values)


def update_authorization(conn: Connection, auth_id: int, values: dict) -> None:
    conn.execute(
        update(roi_authorizations).where(roi_authorizations.c.id == auth_id).values(**_encode(values))
    )


def get_authorization(conn: Connection, auth_id: int) -> dict | None:
    row = conn.execute(select(roi_authorizations).where(roi_authorizations.c.id == auth_id)).first()
    return _row(row) if row is not None else None


def authorizations_for(conn: Connection, mrn: str) -> list[dict]:
    q = select(roi_authorizations).where(roi_authorizations.c.mrn == mrn).order_by(roi_authorizations.c.id)
    return [_row(r) for r in conn.execute(q)]


# -- packets ----------------------------------------------------------------------------------


def insert_packet(conn: Connection, values: dict) -> int:
    return _insert(conn, roi_packets, values)


def get_packet(conn: Connection, packet_id: int) -> dict | None:
    row = conn.execute(select(roi_packets).where(roi_packets.c.id == packet_id)).first()
    return _row(row) if row is not None else None


def packets_for(conn: Connection, request_id: int) -> list[dict]:
    q = select(roi_packets).where(roi_packets.c.request_id == request_id).order_by(roi_packets.c.id)
    return [_row(r) for r in conn.execute(q)]


# -- the disclosure log -----------------------------------------------------------------------


def insert_disclosure(conn: Connection, values: dict) -> int:
    return _insert(conn, roi_disclosures, values)


def disclosures(
    conn: Connection,
    *,
    mrns: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    request_id: int | None = None,
    limit: int = 1000,
) -> list[dict]:
    """Disclosure records, oldest first, of these MRNs, made in ``[start, end]``."""
    q = select(roi_disclosures)
    if mrns is not None:
        q = q.where(roi_disclosures.c.mrn.in_(list(mrns)))
    if start is not None:
        q = q.where(roi_disclosures.c.disclosed_on >= start)
    if end is not None:
        q = q.where(roi_disclosures.c.disclosed_on <= end)
    if request_id is not None:
        q = q.where(roi_disclosures.c.request_id == request_id)
    q = q.order_by(roi_disclosures.c.disclosed_on, roi_disclosures.c.id).limit(max(0, min(limit, 10000)))
    return [_row(r) for r in conn.execute(q)]
