"""What a merge (A40/A34/A36/A39/A30 onto an existing prior patient) carries over besides
identifiers, other names, visits and history: nothing on the prior's chart is dropped.

* **Demographics** (name, birth date, sex, ...): a survivor's column that is empty is filled from
  the prior (the name as a whole, when the survivor has no name part at all); a value the
  survivor has is kept (the merge message describes the survivor).
* **Lists** (addresses, each phone list, next of kin, insurance, allergies, patient-level
  diagnoses): when the merge message carries the list, it is the survivor's list and the prior's
  rows stay on the tombstone; otherwise the prior's rows the survivor does not already hold are
  moved to it (appended, in their order) and exact duplicates are deleted.
* **A visit number on both**: the survivor's visit is kept, its empty fields filled from the
  prior's, and the prior visit's diagnoses and location timeline move to it (duplicates dropped).

Every move is in the chart history (``move``). The caller (``chart._absorb``) clears both lists
digests in the same transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Row

from interface.store import chart_schema as cs

_NAME = ("family", "given", "middle", "prefix", "suffix", "degree", "name_type")
_SCALARS = (
    "mother_maiden_name",
    "birth_date",
    "sex",
    "race",
    "ethnicity",
    "marital_status",
    "language",
    "religion",
    "ssn",
    "death_at",
    "deceased",
)
_VISIT_SKIP = {
    "id",
    "patient_id",
    "visit_number",
    "status",
    "created_at",
    "message_id",
    "updated_at",
    "last_event",
    "recorded_at",
}
_ROW_SKIP = {"id", "patient_id", "seq", "message_id", "updated_at", "visit_id"}


def patient_fills(prior: Row, survivor: Row) -> dict[str, Any]:
    """The survivor's empty demographics, filled from the prior (pure)."""
    p, s = prior._mapping, survivor._mapping
    out: dict[str, Any] = {}
    if all(s[c] is None for c in _NAME) and any(p[c] is not None for c in _NAME):
        out.update({c: p[c] for c in _NAME if p[c] is not None})
    out.update({c: p[c] for c in _SCALARS if s[c] is None and p[c] is not None})
    return out


def _content(table, row: Row) -> dict[str, Any]:
    return {c.name: row._mapping[c.name] for c in table.columns if c.name not in _ROW_SKIP}


def move_rows(
    conn: Connection,
    table,
    prior_id: int,
    survivor_id: int,
    where=None,
    survivor_where=None,
    values: dict | None = None,
) -> int:
    """Move the prior's rows of ``table`` (within ``where``) that the survivor (within
    ``survivor_where``, default ``where``) does not hold to the survivor, after its own; delete
    exact duplicates. Returns how many rows moved."""
    t = table
    survivor_where = where if survivor_where is None else survivor_where
    q = select(t).where(t.c.patient_id == survivor_id)
    if survivor_where is not None:
        q = q.where(survivor_where)
    have = [_content(t, r) for r in conn.execute(q)]
    seq = max([0] + [r.seq for r in conn.execute(q)]) if "seq" in t.c else 0
    q = select(t).where(t.c.patient_id == prior_id)
    if where is not None:
        q = q.where(where)
    moved = 0
    for r in conn.execute(q.order_by(*([t.c.seq] if "seq" in t.c else []), t.c.id)).all():
        content = _content(t, r)
        if values:
            content.update(values)
        if content in have:
            conn.execute(delete(t).where(t.c.id == r.id))
            continue
        have.append(content)
        seq += 1
        changes = {"patient_id": survivor_id, **(values or {})}
        if "seq" in t.c:
            changes["seq"] = seq
        conn.execute(update(t).where(t.c.id == r.id).values(**changes))
        moved += 1
    return moved


def visit_fills(prior_visit: Row, survivor_visit: Row) -> dict[str, Any]:
    """The survivor visit's empty fields, filled from the prior's visit of the same number."""
    p, s = prior_visit._mapping, survivor_visit._mapping
    return {k: p[k] for k in p.keys() if k not in _VISIT_SKIP and s[k] is None and p[k] is not None}


def move_visit_contents(conn: Connection, prior_visit: Row, survivor_visit: Row, survivor_id: int) -> int:
    """Diagnoses and the location timeline of the prior's visit, onto the survivor's visit of the
    same number (duplicate diagnoses dropped; the timeline moves only where the survivor's visit
    has none). Returns how many rows moved."""
    d = cs.diagnoses
    moved = move_rows(
        conn,
        d,
        prior_visit.patient_id,
        survivor_id,
        where=d.c.visit_id == prior_visit.id,
        survivor_where=d.c.visit_id == survivor_visit.id,
        values={"visit_id": survivor_visit.id},
    )
    loc = cs.visit_locations
    if conn.execute(select(loc.c.id).where(loc.c.visit_id == survivor_visit.id).limit(1)).first() is None:
        moved += (
            conn.execute(
                update(loc).where(loc.c.visit_id == prior_visit.id).values(visit_id=survivor_visit.id)
            ).rowcount
            or 0
        )
    return moved
