"""Visits: find, create, renumber, status transitions per event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Row

from interface.hl7.errors import DUPLICATE_KEY_IDENTIFIER, Location, PermanentError, RequiredFieldMissing
from interface.mapping.records import CLEAR, ChartUpdate, Visit
from interface.store import chart_locations, fastsql
from interface.store import chart_schema as cs
from interface.store.chart import (
    CANCEL_ACTIONS,
    STATUSES,
    _Apply,
    _cached,
    _error,
    _fill_blanks,
    _insert_returning,
    _newer,
    _plain,
    _scalar,
    _select_by,
    _visit_number,
    is_stale,
    visit_values,
)


def _find_visit(conn: Connection, patient_id: int, number: str | None) -> Row | None:
    """The patient's visit with this number; without a number, the latest unnumbered visit."""
    t = cs.visits

    def build():
        cond = t.c.visit_number == bindparam("b_number") if number else t.c.visit_number.is_(None)
        return select(t).where(t.c.patient_id == bindparam("b_pid"), cond).order_by(t.c.id.desc()), False

    q = _cached(("find_visit", bool(number)), build)
    params = {"b_pid": patient_id, "b_number": number} if number else {"b_pid": patient_id}
    return fastsql.run(conn, q, params).first()


def _target_visit(ctx: _Apply, upd: ChartUpdate, patient: Row, action: str) -> Row:
    """The existing visit a cancel/renumber acts on, or ``unknown_visit``."""
    if action == "change_visit_number":
        prior = _plain(upd.merge.prior_visit_number) if upd.merge else None
        if not prior:
            raise RequiredFieldMissing(f"{upd.event}: no prior visit number", Location("MRG", field=5))
        row = _find_visit(ctx.conn, patient.id, prior)
        if row is None:
            raise _error(f"{upd.event}: prior visit is unknown", "unknown_visit", Location("MRG", field=5))
        return row
    row = _find_visit(ctx.conn, patient.id, _visit_number(upd))
    if row is None:
        raise _error(
            f"{upd.event}: the visit to cancel is unknown", "unknown_visit", Location("PV1", field=19)
        )
    return row


def initial_status(action: str, v: Visit | None) -> str:
    """The status a visit is created with when its first message is ``action``."""
    if action in ("admit", "transfer", "to_inpatient"):
        return "admitted"
    if action in ("register", "to_outpatient"):
        return "registered"
    if action == "preadmit":
        return "preadmit"
    if action == "discharge":
        return "discharged"
    # An update about a visit we have not seen: infer from what it says.
    if v is not None and _plain(v.discharged_at):
        return "discharged"
    klass = (_plain(v.class_) or "").lower() if v is not None else ""
    if klass in ("preadmit", "p"):
        return "preadmit"
    if klass in ("inpatient", "emergency", "i", "e"):
        return "admitted"
    return "registered"


def _out_of_order(upd: ChartUpdate, status: str) -> PermanentError:
    return _error(
        f"{upd.event} cannot apply to a {status} visit",
        "out_of_order",
        Location("MSH", field=9, component=2),
        code="207",
    )


def transition(
    action: str, status: str, upd: ChartUpdate, stored: dict[str, Any], event_at: str | None
) -> dict[str, Any]:
    """The event's own effect on an existing visit: status and event fields (pure).

    ``stored`` is the visit row before this message. Raises ``out_of_order`` where the event
    contradicts the visit's state (documented in docs/adt-events.md).
    """
    v = upd.visit or Visit()
    out: dict[str, Any] = {}
    if action == "admit":
        if status != "discharged":  # a late A01 after the A03 fills in details only
            out["status"] = "admitted"
        if _scalar(v.admitted_at) is None and not stored.get("admitted_at") and event_at:
            out["admitted_at"] = event_at
    elif action == "register":
        if status in ("preadmit", "cancelled"):
            out["status"] = "registered"
        if _scalar(v.admitted_at) is None and not stored.get("admitted_at") and event_at:
            out["admitted_at"] = event_at
    elif action == "preadmit":
        if status == "cancelled":
            out["status"] = "preadmit"
    elif action in ("to_inpatient", "to_outpatient"):
        inpatient = action == "to_inpatient"
        if status in ("discharged", "cancelled"):
            raise _out_of_order(upd, status)
        out["status"] = "admitted" if inpatient else "registered"
        if _scalar(v.class_) is None:
            out["class"] = "inpatient" if inpatient else "outpatient"
    elif action == "transfer":
        new_location = _plain(v.location)
        if new_location and new_location != stored.get("location"):
            out["location"] = new_location
            out["prior_location"] = _plain(v.prior_location) or stored.get("location")
        if status in ("preadmit", "registered"):
            out["status"] = "admitted"
    elif action == "discharge":
        if status == "cancelled":
            raise _out_of_order(upd, status)
        out["status"] = "discharged"
        if _scalar(v.discharged_at) is None and not stored.get("discharged_at") and event_at:
            out["discharged_at"] = event_at
    elif action == "cancel_admit":
        if status == "discharged":
            raise _out_of_order(upd, status)
        out["status"] = "cancelled"
    elif action == "cancel_preadmit":
        if status not in ("preadmit", "cancelled"):
            raise _out_of_order(upd, status)
        out["status"] = "cancelled"
    elif action == "cancel_discharge":
        if status in ("cancelled", "preadmit"):
            raise _out_of_order(upd, status)
        out["discharged_at"] = CLEAR
        out["discharge_disposition"] = CLEAR
    return out


def _status_before(conn: Connection, visit_id: int, status: str, default: str) -> str:
    """The status a visit had before it last became ``status`` (from the history)."""
    h = cs.chart_history
    row = conn.execute(
        select(h.c.old_value)
        .where(
            h.c.table_name == "visits", h.c.row_id == visit_id, h.c.field == "status", h.c.new_value == status
        )
        .order_by(h.c.id.desc())
        .limit(1)
    ).first()
    return row.old_value if row is not None and row.old_value in STATUSES else default


def _prior_before(conn: Connection, visit_id: int, prior: str | None) -> str | None:
    """The prior location a visit had before its current one was set by a transfer (for A12;
    earlier A12s are skipped so that successive cancels walk back through the transfers)."""
    h = cs.chart_history
    row = conn.execute(
        select(h.c.old_value)
        .where(
            h.c.table_name == "visits",
            h.c.row_id == visit_id,
            h.c.field == "prior_location",
            h.c.new_value == prior,
            h.c.event != "A12",
        )
        .order_by(h.c.id.desc())
        .limit(1)
    ).first()
    return row.old_value if row is not None else None


def _create_visit(ctx: _Apply, patient: Row, number: str | None, status: str) -> Row:
    t = cs.visits
    row = fastsql.run(
        ctx.conn,
        _insert_returning(t),
        dict(
            patient_id=patient.id,
            visit_number=number,
            status=status,
            created_at=ctx.now,
            last_event=ctx.event,
            **ctx.stamp(),
        ),
    ).one()
    ctx.record(patient.id, patient.mrn, t.name, row.id, "status", "create", None, status)
    ctx.created.add(("visits", row.id))
    return row


def _renumber(ctx: _Apply, patient: Row, row: Row, number: str) -> Row:
    if _find_visit(ctx.conn, patient.id, number) is not None:
        raise _error(
            f"{ctx.event}: the new visit number is already in use",
            "merge_conflict",
            Location("PV1", field=19),
            DUPLICATE_KEY_IDENTIFIER,
        )
    ctx.set_fields(cs.visits, row, {"visit_number": number}, patient)
    return fastsql.run(ctx.conn, _select_by(cs.visits, "id"), {"b_value": row.id}).one()


def _apply_visit(ctx: _Apply, upd: ChartUpdate, patient: Row, action: str) -> Row | None:
    number = _visit_number(upd)
    v = upd.visit
    if action == "change_visit_number":
        row = _target_visit(ctx, upd, patient, action)
        if not number:
            raise RequiredFieldMissing(f"{upd.event}: no new visit number", Location("PV1", field=19))
        row = _renumber(ctx, patient, row, number)
        action = "update"
    elif action in CANCEL_ACTIONS:
        row = _target_visit(ctx, upd, patient, action)
    else:
        if v is None and action == "update":
            return None  # an A08 without PV1 says nothing about visits
        row = _find_visit(ctx.conn, patient.id, number)
        prior_number = _plain(upd.merge.prior_visit_number) if upd.merge else None
        if row is None and prior_number and number:  # A06/A07 may renumber (MRG-5 -> PV1-19)
            prior = _find_visit(ctx.conn, patient.id, prior_number)
            if prior is not None:
                row = _renumber(ctx, patient, prior, number)
        if row is None and not number and action == "update":
            return None
        if (
            row is not None
            and not number
            and action in ("admit", "register", "preadmit")
            and row.status in ("discharged", "cancelled")
        ):
            row = None  # an unnumbered new visit: the old unnumbered one is over
        if row is None:
            row = _create_visit(ctx, patient, number, initial_status(action, v))
    stored = dict(row._mapping)
    values: dict[str, Any] = {}
    stale = is_stale(upd.recorded_at, row.recorded_at)
    if stale:
        ctx.record(
            patient.id, patient.mrn, "visits", row.id, None, "ignored_stale", row.recorded_at, upd.recorded_at
        )
        if v is not None:
            values.update(_fill_blanks(ctx, cs.visits, row, visit_values(v)))
    elif v is not None:
        values.update(visit_values(v))
    event_at = _plain(upd.event_at) or _plain(upd.recorded_at)
    step = transition(action, row.status, upd, stored, event_at)
    if action == "cancel_transfer":
        step.update(_cancel_transfer(ctx, upd, row))
    if action == "cancel_discharge" and row.status == "discharged":
        ctx.flush()
        step["status"] = _status_before(ctx.conn, row.id, "discharged", "admitted")
    values.update(step)
    created = ("visits", row.id) in ctx.created
    ctx.set_fields(
        cs.visits,
        row,
        values,
        patient,
        always={"last_event": ctx.event, "recorded_at": _newer(_plain(upd.recorded_at), row.recorded_at)},
    )
    chart_locations.track(ctx, action, stored, ctx.row_after, event_at, created)
    return ctx.row_after


def _cancel_transfer(ctx: _Apply, upd: ChartUpdate, row: Row) -> dict[str, Any]:
    """A12: back to where the patient was (PV1-3 of the A12, else the stored prior location)."""
    back_to = _plain(upd.visit.location) if upd.visit is not None else None
    back_to = back_to or row.prior_location
    if not back_to:
        raise _error(
            f"{upd.event}: the visit has no transfer to cancel",
            "out_of_order",
            Location("PV1", field=3),
            code="207",
        )
    ctx.flush()
    before = _prior_before(ctx.conn, row.id, row.prior_location)
    return {"location": back_to, "prior_location": before if before else CLEAR}


# -- merges and MRN changes -------------------------------------------------------------------
