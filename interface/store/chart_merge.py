"""Merges and identifier changes (A34/A40/A47/A49...): everything moves with
the chart.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row

from interface.hl7.errors import DUPLICATE_KEY_IDENTIFIER, Location, RequiredFieldMissing
from interface.mapping.records import CLEAR, ChartUpdate, Patient
from interface.store import chart_absorb
from interface.store import chart_schema as cs
from interface.store.chart import (
    _Apply,
    _error,
    _items,
    _optional,
    _patient_by_mrn,
    _plain,
    _resolve_row,
    patient_values,
)
from interface.store.chart_patient import (
    LIST_KINDS,
    SOURCED,
    _content_columns,
    _create_patient,
    _incoming_lists,
    _list_rows,
    _upsert_patient,
    forget_lists_digest,
)
from interface.store.chart_visits import _find_visit


def _prior_mrn(upd: ChartUpdate) -> str | None:
    m = upd.merge
    if m is None:
        return None
    prior = _plain(m.prior_mrn)
    if prior:
        return prior
    for ident in _items(m.prior_identifiers) or []:  # mapping could not pick one: take the first
        if _plain(ident.value):
            return _plain(ident.value)
    return None


def _merge(ctx: _Apply, upd: ChartUpdate, mrn: str, *, rename: bool) -> None:
    """A40/A34/A39 (merge ``MRG-1`` into ``PID-3``) and A47/A46 (change ``MRG-1`` to ``PID-3``).

    The prior MRN's row stays as a tombstone whose ``merged_into`` names the survivor, so every
    later message or read for it lands on the survivor.
    """
    prior_mrn = _prior_mrn(upd)
    where = Location("MRG", field=1)
    if not prior_mrn:
        raise RequiredFieldMissing(f"{upd.event}: no prior MRN in MRG-1", where)
    if prior_mrn == mrn:
        raise _error(
            f"{upd.event}: prior and surviving MRN are the same",
            "merge_conflict",
            where,
            DUPLICATE_KEY_IDENTIFIER,
        )
    prior = _patient_by_mrn(ctx.conn, prior_mrn)
    survivor = _resolve_row(ctx.conn, mrn)
    if prior is not None and prior.merged_into:
        done = _resolve_row(ctx.conn, prior_mrn)
        if survivor is not None and done.id == survivor.id:  # a resend: already merged
            ctx.record(
                survivor.id,
                survivor.mrn,
                "patients",
                prior.id,
                "merged_into",
                "already_merged",
                prior_mrn,
                survivor.mrn,
            )
            _upsert_patient(ctx, upd, mrn)
            return
        raise _error(
            f"{upd.event}: prior MRN was already merged into another patient",
            "merge_conflict",
            where,
            DUPLICATE_KEY_IDENTIFIER,
        )
    if prior is not None and survivor is not None and survivor.id == prior.id:
        raise _error(
            f"{upd.event}: surviving MRN was merged into the prior one",
            "merge_conflict",
            where,
            DUPLICATE_KEY_IDENTIFIER,
        )
    if rename and prior is not None and survivor is not None:
        raise _error(
            f"{upd.event}: the new MRN already exists; send a merge (A40) instead",
            "merge_conflict",
            Location("PID", field=3),
            DUPLICATE_KEY_IDENTIFIER,
        )

    if prior is None:
        # Never heard of the prior MRN: the survivor gets the message's demographics and the
        # prior MRN becomes a pointer to it, so anything still in flight for it lands right.
        row = _upsert_patient(ctx, upd, mrn)
        _create_patient(ctx, prior_mrn, merged_into=row.mrn)
    elif rename:
        row = _rename(ctx, upd, prior, mrn)
    else:
        row = _upsert_patient(ctx, upd, mrn)
        carried = {field for field, _, _, _ in _incoming_lists(upd)}
        if upd.diagnoses is not None:
            carried.add("diagnoses")
        cleared = {k for k, v in patient_values(upd.patient or Patient()).items() if v is CLEAR}
        _absorb(ctx, prior, row, carried, cleared)
    _reassign_documents(ctx, prior_mrn, row.mrn)
    ctx.release(row.mrn)
    ctx.release(prior_mrn)


def _rename(ctx: _Apply, upd: ChartUpdate, prior: Row, mrn: str) -> Row:
    """A47: the patient keeps its row (and everything on it) under the new MRN."""
    t = cs.patients
    ctx.conn.execute(update(t).where(t.c.id == prior.id).values(mrn=mrn, **ctx.stamp()))
    ctx.record(prior.id, mrn, "patients", prior.id, "mrn", "rename", prior.mrn, mrn)
    # The old MRN identifier(s) named in MRG-1 are no longer this patient's identifiers.
    old_idents = _items(upd.merge.prior_identifiers) or []
    values = {_plain(i.value) for i in old_idents if _plain(i.value)} or {prior.mrn}
    ti = cs.patient_identifiers
    for r in ctx.conn.execute(
        select(ti).where(ti.c.patient_id == prior.id, ti.c.value.in_(sorted(values)))
    ).all():
        ctx.conn.execute(delete(ti).where(ti.c.id == r.id))
        ctx.record(
            prior.id,
            mrn,
            ti.name,
            r.id,
            "identifiers",
            "remove",
            {"value": r.value, "authority": r.authority or None, "type": r.type or None},
            None,
        )
    _create_patient(ctx, prior.mrn, merged_into=mrn)
    return _upsert_patient(ctx, upd, mrn)


def _absorb(
    ctx: _Apply, prior: Row, survivor: Row, carried: set[str] = frozenset(), cleared: set[str] = frozenset()
) -> None:
    """Move the prior patient's identifiers, other names, visits and history to the survivor,
    and everything else ``chart_absorb`` describes: empty demographics filled from the prior,
    the lists the merge message does not carry (``carried``) moved, a shared visit number's
    diagnoses and locations moved; columns the merge message cleared (``""``) stay empty. Both lists digests are cleared (one statement per merge):
    list rows move here (see "the lists digest").
    """
    conn = ctx.conn
    fills = {k: v for k, v in chart_absorb.patient_fills(prior, survivor).items() if k not in cleared}
    if fills:
        ctx.created.discard(("patients", survivor.id))  # per-field history: values came from the prior
        ctx.set_fields(cs.patients, survivor, fills, survivor)
    forget_lists_digest(ctx, prior.id, survivor.id)
    ctx.created.clear()  # rows move to the survivor: "created here, owns nothing" no longer holds
    ti = cs.patient_identifiers
    have = {
        (r.authority, r.type, r.value) for r in conn.execute(select(ti).where(ti.c.patient_id == survivor.id))
    }
    moved_ids = 0
    for r in conn.execute(select(ti).where(ti.c.patient_id == prior.id)).all():
        if (r.authority, r.type, r.value) in have:
            conn.execute(delete(ti).where(ti.c.id == r.id))
        else:
            conn.execute(update(ti).where(ti.c.id == r.id).values(patient_id=survivor.id))
            moved_ids += 1
    tn = cs.patient_names
    names = _list_rows(conn, tn, survivor.id)
    seq = len(names)
    cols = _content_columns(tn)
    for r in conn.execute(select(tn).where(tn.c.patient_id == prior.id).order_by(tn.c.seq)).all():
        row = {c: r._mapping[c] for c in cols}
        if row in names:
            conn.execute(delete(tn).where(tn.c.id == r.id))
            continue
        names.append(row)
        seq += 1
        conn.execute(update(tn).where(tn.c.id == r.id).values(patient_id=survivor.id, seq=seq))
    tv = cs.visits
    for v in conn.execute(select(tv).where(tv.c.patient_id == prior.id)).all():
        kept = _find_visit(conn, survivor.id, v.visit_number) if v.visit_number else None
        if kept is not None:
            # Same visit number on both: the survivor's visit is kept, its empty fields filled
            # from the prior's, whose diagnoses and locations move to it; the emptied prior
            # visit row stays on the tombstone.
            ctx.record(
                survivor.id, survivor.mrn, "visits", v.id, "patient_id", "kept_on_prior", prior.mrn, prior.mrn
            )
            ctx.set_fields(tv, kept, chart_absorb.visit_fills(v, kept), survivor)
            if chart_absorb.move_visit_contents(conn, v, kept, survivor.id):
                ctx.record(
                    survivor.id, survivor.mrn, "visits", kept.id, "diagnoses", "move", prior.mrn, survivor.mrn
                )
            continue
        conn.execute(update(tv).where(tv.c.id == v.id).values(patient_id=survivor.id))
        conn.execute(
            update(cs.diagnoses).where(cs.diagnoses.c.visit_id == v.id).values(patient_id=survivor.id)
        )
        ctx.record(survivor.id, survivor.mrn, "visits", v.id, "patient_id", "move", prior.mrn, survivor.mrn)
    for field, table, _ in LIST_KINDS + (("diagnoses", cs.diagnoses, None),):
        if field in carried:
            continue  # the merge message's list is the survivor's
        where = (
            cs.patient_phones.c.source == field
            if field in SOURCED
            else cs.diagnoses.c.visit_id.is_(None)
            if field == "diagnoses"
            else None
        )
        if chart_absorb.move_rows(conn, table, prior.id, survivor.id, where):
            ctx.record(survivor.id, survivor.mrn, table.name, None, field, "move", prior.mrn, survivor.mrn)
    h = cs.chart_history
    ctx.flush()
    conn.execute(update(h).where(h.c.patient_id == prior.id).values(patient_id=survivor.id))
    conn.execute(
        update(cs.patients)
        .where(cs.patients.c.id == prior.id)
        .values(merged_into=survivor.mrn, merged_at=ctx.now, last_event=ctx.event, **ctx.stamp())
    )
    ctx.record(survivor.id, prior.mrn, "patients", prior.id, "merged_into", "merge", None, survivor.mrn)
    if moved_ids:
        ctx.record(survivor.id, survivor.mrn, ti.name, None, "identifiers", "move", prior.mrn, survivor.mrn)


def _reassign_documents(ctx: _Apply, from_mrn: str, to_mrn: str) -> None:
    reassign = _optional("interface.store.documents", "reassign_patient")
    if reassign is not None:
        reassign(ctx.conn, from_mrn, to_mrn, ctx.now)


# ---------------------------------------------------------------------------------------------
# The read side.
