"""The chart's change history (``chart_history``) one page at a time, newest first, for the API.

Keyset paging on the history's id (``before_id``), ``limit`` + 1 rows read to know whether there
is more; merged-in patients' history is the survivor's (merges move it), so a merged-away MRN
pages the survivor's history.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from interface.store import chart
from interface.store import chart_schema as cs


def patient_id(conn: Connection, mrn: str) -> int | None:
    """The id of the patients row an MRN now lives under (following merges), or None."""
    survivor = chart.resolve_mrn(conn, mrn)
    if survivor is None:
        return None
    return conn.execute(select(cs.patients.c.id).where(cs.patients.c.mrn == survivor)).scalar()


def history_page(
    conn: Connection, patient_id: int, *, limit: int, before_id: int | None = None
) -> tuple[list[dict], int | None]:
    """``(entries, next_before_id)``: up to ``limit`` entries older than ``before_id``."""
    h = cs.chart_history
    q = select(h).where(h.c.patient_id == patient_id).order_by(h.c.id.desc()).limit(limit + 1)
    if before_id is not None:
        q = q.where(h.c.id < before_id)
    rows = conn.execute(q).all()
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        {
            "id": r.id,
            "at": r.at.isoformat() if isinstance(r.at, datetime) else r.at,
            "message_id": r.message_id,
            "event": r.event,
            "mrn": r.mrn,
            "table": r.table_name,
            "row_id": r.row_id,
            "field": r.field,
            "action": r.action,
            "old": r.old_value,
            "new": r.new_value,
        }
        for r in rows
    ]
    return entries, (rows[-1].id if more and rows else None)
