"""Where the patient was during a visit: the location timeline (``visit_locations``).

The visits row keeps the current location (PV1-3) and the prior one (PV1-6); this module keeps
every location with its times, for the chart and the API (``visits[].locations``):

* a location the visit gets (A01/A04/A05 with PV1-3, A02/A17 transfers, an A08 correcting it)
  opens a row: ``from_at`` is PV1-44 (admit time) for the visit's first location, else the event
  time (EVN-6, else EVN-2, else MSH-7); the row it replaces is closed at that time;
* A03 closes the open row at the discharge time (PV1-45, else the event time); A11 at the event
  time; A13 reopens the last one;
* A12 (cancel transfer) marks the cancelled transfer's row ``cancelled_at`` and reopens the row
  before it (the patient never left), so successive A12s walk back.

Rows hang off the visit (``visit_id``), so merges that move a visit move its timeline. Written
only when the location (or the visit's state) changes: an A08 that resends the same PV1-3 costs
no statement here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Row

from interface.store import chart_schema as cs
from interface.store import fastsql

_T = cs.visit_locations
_STMTS: dict = {}


def _st(key: str, build) -> fastsql.Statement:
    st = _STMTS.get(key)
    if st is None:
        stmt, keyed = build()
        st = _STMTS[key] = fastsql.Statement(stmt, keyed=keyed)
    return st


def _insert() -> fastsql.Statement:
    return _st("insert", lambda: (_T.insert(), True))


def _close() -> fastsql.Statement:
    """Close the visit's open (not cancelled) rows at ``b_at``."""
    return _st(
        "close",
        lambda: (
            update(_T)
            .where(_T.c.visit_id == bindparam("b_visit"), _T.c.to_at.is_(None), _T.c.cancelled_at.is_(None))
            .values(
                to_at=bindparam("b_at"), message_id=bindparam("b_message"), updated_at=bindparam("b_now")
            ),
            False,
        ),
    )


def _live_rows(conn: Connection, visit_id: int) -> list[Row]:
    """The visit's rows that were not cancelled, newest first."""
    return conn.execute(
        select(_T).where(_T.c.visit_id == visit_id, _T.c.cancelled_at.is_(None)).order_by(_T.c.id.desc())
    ).all()


def track(ctx: Any, action: str, before: dict, after: Row, event_at: str | None, created: bool) -> None:
    """Update the visit's timeline after a message changed the visits row ``before`` -> ``after``
    (``ctx``: the chart's ``_Apply``: connection, message, clock)."""
    conn = ctx.conn
    stamp = {"b_message": ctx.message_id, "b_now": ctx.now}
    if action == "cancel_transfer":
        _cancel_transfer(ctx, after, event_at)
        return
    old = None if created else before.get("location")
    new = after.location
    if new != old:
        first = created or not old
        at = (after.admitted_at if first and after.admitted_at else None) or event_at
        if not created:
            fastsql.run(conn, _close(), {"b_visit": after.id, "b_at": at, **stamp})
        if new:
            fastsql.run(
                conn,
                _insert(),
                dict(
                    visit_id=after.id,
                    location=new,
                    from_at=at,
                    event=ctx.event,
                    message_id=ctx.message_id,
                    updated_at=ctx.now,
                ),
            )
    if after.status in ("discharged", "cancelled") and (created or action in ("discharge", "cancel_admit")):
        at = (after.discharged_at if after.status == "discharged" else None) or event_at
        fastsql.run(conn, _close(), {"b_visit": after.id, "b_at": at, **stamp})
    elif action == "cancel_discharge" and before.get("status") == "discharged":
        rows = _live_rows(conn, after.id)
        if rows and rows[0].to_at is not None:
            conn.execute(
                update(_T)
                .where(_T.c.id == rows[0].id)
                .values(to_at=None, message_id=ctx.message_id, updated_at=ctx.now)
            )


def _cancel_transfer(ctx: Any, after: Row, event_at: str | None) -> None:
    conn = ctx.conn
    rows = _live_rows(conn, after.id)
    if rows and rows[0].location != after.location:
        latest = rows[0]
        conn.execute(
            update(_T)
            .where(_T.c.id == latest.id)
            .values(
                cancelled_at=event_at or latest.from_at,
                to_at=latest.to_at or event_at,
                message_id=ctx.message_id,
                updated_at=ctx.now,
            )
        )
        rows = rows[1:]
        if rows and rows[0].location == after.location:
            conn.execute(
                update(_T)
                .where(_T.c.id == rows[0].id)
                .values(to_at=None, message_id=ctx.message_id, updated_at=ctx.now)
            )
            return
        at = latest.from_at or event_at
    elif rows:
        return  # the timeline already ends where the A12 says the patient is
    else:
        at = event_at  # a visit from before the timeline existed: start it here
    if after.location:
        fastsql.run(
            conn,
            _insert(),
            dict(
                visit_id=after.id,
                location=after.location,
                from_at=at,
                event=ctx.event,
                message_id=ctx.message_id,
                updated_at=ctx.now,
            ),
        )


def locations_for(conn: Connection, visit_ids: list[int]) -> dict[int, list[dict]]:
    """``{visit id: [{location, from, to, event, cancelled_at}, ...]}`` oldest first."""
    out: dict[int, list[dict]] = {}
    rows = [
        r
        for part in fastsql.chunks(list(visit_ids))
        for r in fastsql.run(conn, _by_visits(len(part)), fastsql.in_values("k", part))
    ]
    for r in sorted(rows, key=lambda r: r.id) if len(visit_ids) > fastsql.IN_CHUNK else rows:
        out.setdefault(r.visit_id, []).append(
            {
                "location": r.location,
                "from": r.from_at,
                "to": r.to_at,
                "event": r.event,
                "cancelled_at": r.cancelled_at,
            }
        )
    return out


_BY_VISITS: dict[int, fastsql.Statement] = {}


def _by_visits(n: int) -> fastsql.Statement:
    """:func:`locations_for`'s statement for ``n`` visits, built and compiled once (a chart page
    and every FHIR Encounter search read it)."""
    st = _BY_VISITS.get(n)
    if st is None:
        st = _BY_VISITS[n] = fastsql.Statement(
            select(_T).where(_T.c.visit_id.in_(fastsql.in_binds("k", n))).order_by(_T.c.id)
        )
    return st
