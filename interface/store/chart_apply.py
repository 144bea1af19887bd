"""Applying the records of one message to a chart, in the item's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection, Row

from interface.hl7.errors import UNSUPPORTED_EVENT_CODE, Location, RequiredFieldMissing
from interface.mapping.records import ChartUpdate
from interface.store.chart import (
    CANCEL_ACTIONS,
    EVENTS,
    NUMBERED_ACTIONS,
    EventRule,
    _Apply,
    _error,
    _plain,
    _require_visit_number,
)
from interface.store.chart_merge import _merge
from interface.store.chart_patient import _apply_lists, _upsert_patient
from interface.store.chart_visits import _apply_visit, _target_visit


def apply_updates(
    conn: Connection,
    updates: list[ChartUpdate],
    *,
    message_id: int,
    now: datetime,
    resolved: dict[str, Row | None] | None = None,
) -> list[dict]:
    """Apply the chart updates of one message in the caller's transaction (never commits).

    ``resolved``: patient rows already read in this transaction, nothing written since, by the
    MRN looked up (``_resolve_row``'s answer, None for no chart) — what the identity check
    (``identity_check.check``) returns; the first update uses them instead of reading the
    patient again. Later updates of the message read afresh (the first may have changed them).

    Returns the changes made, in order: ``{mrn, table, row_id, field, action, old, new, event}``.
    Raises ``PermanentError``/``RequiredFieldMissing`` with a ``reason`` from ``errors.REASONS``
    (unsupported_event, missing_field, unknown_visit, merge_conflict, out_of_order); the caller
    rolls back, so a failing message changes nothing.
    """
    changes: list[dict] = []
    for upd in updates:
        event = (upd.event or "").strip().upper()
        rule = EVENTS.get(event)
        if rule is None:
            raise _error(
                f"ADT event {event or '(none)'} is not supported by the chart store",
                "unsupported_event",
                Location("MSH", field=9, component=2),
                UNSUPPORTED_EVENT_CODE,
            )
        mrn = _plain(upd.mrn)
        if not mrn:
            raise RequiredFieldMissing(
                "no MRN of the channel's assigning authority in PID-3", Location("PID", field=3)
            )
        ctx = _Apply(conn, message_id, now, event, changes)
        if resolved and rule.patient == "upsert":  # a merge or rename writes patient rows
            # before it looks the MRNs up again: it reads afresh (A47's new MRN had no chart
            # when the identity check looked; after the rename it has)
            ctx.resolved = resolved
        resolved = None
        if rule.patient == "merge":
            _merge(ctx, upd, mrn, rename=False)
        elif rule.patient == "rename":
            _merge(ctx, upd, mrn, rename=True)
        else:
            _apply_event(ctx, upd, mrn, rule)
        ctx.flush()
    return changes


def _apply_event(ctx: _Apply, upd: ChartUpdate, mrn: str, rule: EventRule) -> None:
    action = rule.visit
    if action in NUMBERED_ACTIONS:
        _require_visit_number(upd)
    if action in CANCEL_ACTIONS:
        # Check before writing anything: the patient and the visit must exist.
        patient = ctx.resolve(mrn)
        if patient is None:
            raise _error(
                f"{upd.event}: patient is unknown, so is the visit",
                "unknown_visit",
                Location("PV1", field=19),
            )
        _target_visit(ctx, upd, patient, action)
    patient = _upsert_patient(ctx, upd, mrn)
    visit = _apply_visit(ctx, upd, patient, action) if action else None
    _apply_lists(ctx, upd, patient, visit)
