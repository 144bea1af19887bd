"""The chart store: applies ``ChartUpdate`` records with ADT event semantics, and reads charts.

Write side: :func:`apply_updates` runs inside the caller's transaction and never commits; it
returns the list of changes it made (the same rows it writes to ``chart_history``), so
``interface test --channel`` can run it in a rolled-back transaction to show what a message would
change. Problems a clerk must look at raise :class:`~interface.errors.HL7Error` subclasses whose
``reason`` is one of ``errors.REASONS`` and whose ``location`` points into the message.

Read side: :func:`resolve_mrn`, :func:`get_chart`, :func:`search_patients`, :func:`history`.

Rules (the full event table is in ``docs/adt-events.md``):

* a scalar that is ``None`` is no change, ``CLEAR`` clears the stored value;
* identifiers and other names merge (added, never removed by an update); addresses, phones,
  next of kin, insurance, allergies and diagnoses are replaced as a whole when the update carries
  the list, left alone when it is ``None``;
* a message whose ``recorded_at`` is older than the newest one already applied to the patient (or
  visit) does not overwrite its details (it only fills fields no message has ever set or
  cleared); its event (status change, transfer...) still applies, because the queue applies
  events in arrival order; the skipped overwrite is in the history;
* a merged-away MRN is followed to its survivor for every update and read.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from . import chart_absorb, chart_locations
from . import chart_schema as cs
from . import fastsql
from .errors import (DUPLICATE_KEY_IDENTIFIER, SEGMENT_SEQUENCE_ERROR, UNKNOWN_KEY_IDENTIFIER,
                     UNSUPPORTED_EVENT_CODE, Location, PermanentError, RequiredFieldMissing)
from .records import (CLEAR, Address, ChartUpdate, Insurance, Name, NextOfKin, Patient, Person,
                      Visit)

STATUSES = ("preadmit", "admitted", "registered", "discharged", "cancelled")


@dataclass(frozen=True)
class EventRule:
    """What a trigger event does: to the patient (``upsert``, ``merge``, ``rename``) and to the
    visit (an action name below, or None for patient-only events)."""

    visit: str | None
    patient: str = "upsert"


# Visit actions that need the visit to exist already (an unknown one is ``unknown_visit``).
CANCEL_ACTIONS = frozenset({"cancel_admit", "cancel_transfer", "cancel_discharge",
                            "cancel_preadmit", "change_visit_number"})

# Visit actions about a visit that exists (or, sent before its A01, is the same visit): PV1-19
# is required, so that the event can never create or change a visit without a number (101 at
# PV1-19; no PV1 at all: 100 at PV1). A01/A04/A05/A14 may start an unnumbered visit and A08 /
# A54 / A55 update one without a number, as before; A50 checks MRG-5 and PV1-19 itself.
NUMBERED_ACTIONS = frozenset({"transfer", "discharge", "to_inpatient", "to_outpatient",
                              "cancel_admit", "cancel_transfer", "cancel_discharge", "cancel_preadmit"})

EVENTS: dict[str, EventRule] = {
    "A01": EventRule("admit"),
    "A02": EventRule("transfer"),
    "A03": EventRule("discharge"),
    "A04": EventRule("register"),
    "A05": EventRule("preadmit"),
    "A06": EventRule("to_inpatient"),
    "A07": EventRule("to_outpatient"),
    "A08": EventRule("update"),
    "A09": EventRule(None),  # patient departing (tracking): demographics only
    "A10": EventRule(None),  # patient arriving (tracking)
    "A11": EventRule("cancel_admit"),
    "A12": EventRule("cancel_transfer"),
    "A13": EventRule("cancel_discharge"),
    "A14": EventRule("preadmit"),  # pending admit
    "A15": EventRule(None),  # pending transfer: nothing happened yet
    "A16": EventRule(None),  # pending discharge
    "A17": EventRule("transfer"),  # bed swap: one update per patient, each with its new location
    "A21": EventRule(None),  # leave of absence out / return and their cancels: status unchanged
    "A22": EventRule(None),
    "A25": EventRule(None),  # cancel pending discharge
    "A26": EventRule(None),  # cancel pending transfer
    "A27": EventRule("cancel_preadmit"),  # cancel pending admit
    "A28": EventRule(None),  # add person information
    "A31": EventRule(None),  # update person information
    "A32": EventRule(None),  # cancel patient arriving / departing (tracking)
    "A33": EventRule(None),
    "A38": EventRule("cancel_preadmit"),
    "A50": EventRule("change_visit_number"),
    "A52": EventRule(None),
    "A53": EventRule(None),
    "A54": EventRule("update"),  # change attending doctor
    "A55": EventRule("update"),  # cancel change attending doctor (carries the restored one)
    "A60": EventRule(None),  # update allergy information
    "A30": EventRule(None, "merge"),  # merge person information (v2.3 and earlier)
    "A34": EventRule(None, "merge"),  # merge patient information, patient id only
    "A36": EventRule(None, "merge"),  # merge patient id and account number
    "A39": EventRule(None, "merge"),  # merge person, patient id
    "A40": EventRule(None, "merge"),  # merge patient, patient identifier list
    "A46": EventRule(None, "rename"),  # change patient id
    "A47": EventRule(None, "rename"),  # change patient identifier list
    "A49": EventRule(None),  # change patient account number (PID-18, not charted): chart kept whole
}


# ---------------------------------------------------------------------------------------------
# Pure helpers: values from records, JSON text for history, timestamps.


def _scalar(value: Any) -> Any:
    """None stays None (no change), CLEAR stays CLEAR, '' is no change, anything else is text."""
    if value is None or value is CLEAR:
        return value
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _plain(value: Any) -> str | None:
    """A list item's value: CLEAR and empty both mean nothing."""
    value = _scalar(value)
    return None if value is CLEAR else value


def _items(value: Any) -> list | None:
    """None is no change, CLEAR is the empty list."""
    if value is None:
        return None
    if value is CLEAR:
        return []
    return list(value)


def _name_parts(name: Name | Any, prefix: str = "") -> dict[str, Any]:
    parts = ("family", "given", "middle", "prefix", "suffix", "degree")
    if name is CLEAR:
        return {prefix + p: CLEAR for p in parts}
    name = name or Name()
    return {prefix + p: _scalar(getattr(name, p)) for p in parts}


def _person_parts(person: Person | Any, prefix: str) -> dict[str, Any]:
    parts = ("id", "family", "given", "authority")
    if person is CLEAR:
        return {prefix + p: CLEAR for p in parts}
    person = person or Person()
    return {prefix + p: _scalar(getattr(person, p)) for p in parts}


def _address_parts(address: Address | Any, prefix: str = "") -> dict[str, Any]:
    parts = ("street", "other", "city", "state", "postal_code", "country")
    address = address if isinstance(address, Address) else Address()
    return {prefix + p: _scalar(getattr(address, p)) for p in parts}


def patient_values(p: Patient) -> dict[str, Any]:
    """Column -> value/None/CLEAR for the patients row."""
    out = _name_parts(p.name)
    out["name_type"] = _scalar(p.name.type) if isinstance(p.name, Name) else p.name
    for col in ("mother_maiden_name", "birth_date", "sex", "race", "ethnicity", "marital_status",
                "language", "religion", "ssn", "death_at", "deceased"):
        out[col] = _scalar(getattr(p, col))
    return out


def visit_values(v: Visit) -> dict[str, Any]:
    """Column -> value/None/CLEAR for the visits row (details, not the status)."""
    out = {"visit_authority": _scalar(v.visit_authority), "class": _scalar(v.class_)}
    for col in ("location", "prior_location", "hospital_service", "admit_source",
                "admission_type", "discharge_disposition", "admitted_at", "discharged_at",
                "expected_admit_at"):
        out[col] = _scalar(getattr(v, col))
    out.update(_person_parts(v.attending, "attending_"))
    out.update(_person_parts(v.referring, "referring_"))
    return out


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if v is CLEAR else v) for k, v in d.items()}


def _name_row(n: Name) -> dict[str, Any]:
    row = _clean(_name_parts(n))
    row["type"] = _plain(n.type) if isinstance(n, Name) else None
    return row


def _address_row(a: Address) -> dict[str, Any]:
    row = _clean(_address_parts(a))
    row["type"] = _plain(a.type)
    return row


def _phone_row(p) -> dict[str, Any]:
    return {k: _plain(getattr(p, k)) for k in ("number", "use", "equipment", "email")}


def _nok_row(n: NextOfKin) -> dict[str, Any]:
    row = _clean(_name_parts(n.name))
    row.update(relationship=_plain(n.relationship), phone=_plain(n.phone),
               contact_role=_plain(n.contact_role))
    row.update(_clean(_address_parts(n.address, "address_")))
    return row


def _insurance_row(i: Insurance) -> dict[str, Any]:
    row = {k: _plain(getattr(i, k)) for k in ("plan", "company_id", "company", "group_name",
                                              "effective", "expiration", "member_id",
                                              "relationship", "priority")}
    row["group_number"] = _plain(i.group)
    row.update(_clean(_name_parts(i.insured_name, "insured_")))
    return row


def _allergy_row(a) -> dict[str, Any]:
    return {k: _plain(getattr(a, k)) for k in ("code", "description", "type", "severity",
                                               "reaction", "identified")}


def _diagnosis_row(d) -> dict[str, Any]:
    return {k: _plain(getattr(d, k)) for k in ("code", "description", "coding_system", "type",
                                               "at")}


def _blank(row: dict[str, Any]) -> bool:
    return all(v is None for v in row.values())


def _text(value: Any) -> str | None:
    """A history cell: text as is, structures as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def instant(value: str | None) -> datetime | None:
    """An ISO date/timestamp as an aware datetime (naive = UTC), None if absent or unreadable."""
    if not value or value is CLEAR:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def is_stale(incoming: str | None, stored: str | None) -> bool:
    """True when the message was recorded before the newest one already applied."""
    new, old = instant(incoming), instant(stored)
    return new is not None and old is not None and new < old


def _newer(incoming: str | None, stored: str | None) -> str | None:
    if instant(incoming) is None:
        return stored
    if instant(stored) is None or instant(incoming) > instant(stored):
        return incoming
    return stored


def _fill_blanks(ctx: "_Apply", table, row: Row, values: dict[str, Any]) -> dict[str, Any]:
    """From a stale message, only the values for fields no message has ever set or cleared:
    an older message never overwrites newer data, but the A01 that arrives after its A03 still
    supplies the admit time nobody else gave."""
    ctx.flush()
    h = cs.chart_history
    touched = {r.field for r in ctx.conn.execute(select(h.c.field).distinct().where(
        h.c.table_name == table.name, h.c.row_id == row.id, h.c.field.is_not(None)))}
    current = row._mapping
    return {k: v for k, v in values.items()
            if v is not None and v is not CLEAR and current[k] is None and k not in touched}


def _error(text: str, reason: str, location: Location | None = None,
           code: str = UNKNOWN_KEY_IDENTIFIER) -> PermanentError:
    return PermanentError(text, location=location, code=code, reason=reason)


def _optional(module: str, name: str) -> Callable | None:
    """A colleague's function if its module and the function exist (built in parallel)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    return getattr(mod, name, None)


# ---------------------------------------------------------------------------------------------
# The write side.
#
# Speed: statements are built once and executed with parameters (``conn.execute(stmt, params)``)
# rather than rebuilt with ``.values(**literals)`` per row, which made SQLAlchemy construct and
# hash a bind parameter per value on every call; history rows are buffered per message and written
# with one executemany (flushed before anything reads ``chart_history`` back).

_STMTS: dict = {}


def _cached(key, build) -> fastsql.Statement:
    st = _STMTS.get(key)
    if st is None:
        stmt, keyed = build()
        st = _STMTS[key] = fastsql.Statement(stmt, keyed=keyed)
    return st


def _insert(table) -> fastsql.Statement:
    """INSERT (the columns are the parameters' keys)."""
    return _cached(("insert", table.name), lambda: (insert(table), True))


def _insert_id(table) -> fastsql.Statement:
    """INSERT one row RETURNING its id."""
    return _cached(("insert_id", table.name), lambda: (insert(table).returning(table.c.id), True))


def _insert_returning(table) -> fastsql.Statement:
    """INSERT one row RETURNING the whole row (as a SELECT of it would read it back)."""
    return _cached(("insert_returning", table.name),
                   lambda: (insert(table).returning(*table.c), True))


def _update_by_id(table) -> fastsql.Statement:
    """UPDATE table SET <the parameter keys> WHERE id = :b_id."""
    return _cached(("update", table.name),
                   lambda: (update(table).where(table.c.id == bindparam("b_id")), True))


def _update_returning(table) -> fastsql.Statement:
    """UPDATE table SET <the parameter keys> WHERE id = :b_id RETURNING the whole row."""
    return _cached(("update_returning", table.name),
                   lambda: (update(table).where(table.c.id == bindparam("b_id"))
                            .returning(*table.c), True))


def _select_by(table, column: str) -> fastsql.Statement:
    return _cached(("select", table.name, column),
                   lambda: (select(table).where(table.c[column] == bindparam("b_value")), False))


class _Apply:
    """One update being applied: the connection, the message, the change log."""

    def __init__(self, conn: Connection, message_id: int, now: datetime, event: str,
                 changes: list[dict]):
        self.conn = conn
        self.message_id = message_id
        self.now = now
        self.event = event
        self.changes = changes
        self.pending: list[dict] = []  # chart_history rows not written yet (see flush)
        self.row_after: Row | None = None  # the row as the last set_fields(always=...) left it
        # (table, id) of patients and visits created by this update: they own no list rows yet,
        # so their lists need no read-back and no delete (cleared when a merge moves rows)
        self.created: set[tuple[str, int]] = set()

    def flush(self) -> None:
        """Write the buffered history rows (one executemany); call before reading history."""
        if self.pending:
            fastsql.run_many(self.conn, _insert(cs.chart_history), self.pending)
            self.pending = []

    def record(self, patient_id: int | None, mrn: str | None, table: str, row_id: int | None,
               field: str | None, action: str, old: Any = None, new: Any = None) -> None:
        self.changes.append({"mrn": mrn, "table": table, "row_id": row_id, "field": field,
                             "action": action, "old": old, "new": new, "event": self.event})
        self.pending.append(dict(
            patient_id=patient_id, mrn=mrn, table_name=table, row_id=row_id, field=field,
            action=action, old_value=_text(old), new_value=_text(new),
            message_id=self.message_id, event=self.event, at=self.now))

    def stamp(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "updated_at": self.now}

    def set_fields(self, table, row: Row, values: dict[str, Any], patient: Row,
                   always: dict[str, Any] | None = None) -> dict:
        """Write the values that differ (None skipped, CLEAR clears), one history row each — or,
        for a row this update created, one ``initial`` row with all its first values (a "set"
        from nothing per field kept nothing earlier, and was half of all history rows);
        ``always``: bookkeeping columns written in the same UPDATE whether or not anything
        differed (no history, no stamp of their own)."""
        sets: dict[str, Any] = {}
        current = row._mapping
        created = (table.name, row.id) in self.created
        for col, value in values.items():
            if value is None:
                continue
            new = None if value is CLEAR else value
            old = current[col]
            if old == new:
                continue
            sets[col] = new
            if not created:
                self.record(patient.id, patient.mrn, table.name, row.id, col,
                            "clear" if new is None else "set", old, new)
        if created and sets:  # a row this update created: its first values in one entry
            self.record(patient.id, patient.mrn, table.name, row.id, None, "initial", None, sets)
        params = {"b_id": row.id, **sets, **(self.stamp() if sets else {}), **(always or {})}
        if always:  # the UPDATE happens anyway: let it return the row (no re-select)
            self.row_after = fastsql.run(self.conn, _update_returning(table), params).one()
        elif sets:
            fastsql.run(self.conn, _update_by_id(table), params)
        return sets

    def release(self, mrn: str) -> None:
        """Documents held for this MRN may proceed now."""
        release_held = _optional("interface.queue", "release_held")
        if release_held is not None:
            release_held(self.conn, mrn, self.now)


def apply_updates(conn: Connection, updates: list[ChartUpdate], *, message_id: int,
                  now: datetime) -> list[dict]:
    """Apply the chart updates of one message in the caller's transaction (never commits).

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
            raise _error(f"ADT event {event or '(none)'} is not supported by the chart store",
                         "unsupported_event", Location("MSH", field=9, component=2),
                         UNSUPPORTED_EVENT_CODE)
        mrn = _plain(upd.mrn)
        if not mrn:
            raise RequiredFieldMissing("no MRN of the channel's assigning authority in PID-3",
                                       Location("PID", field=3))
        ctx = _Apply(conn, message_id, now, event, changes)
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
        patient = _resolve_row(ctx.conn, mrn)
        if patient is None:
            raise _error(f"{upd.event}: patient is unknown, so is the visit",
                         "unknown_visit", Location("PV1", field=19))
        _target_visit(ctx, upd, patient, action)
    patient = _upsert_patient(ctx, upd, mrn)
    visit = _apply_visit(ctx, upd, patient, action) if action else None
    _apply_lists(ctx, upd, patient, visit)


def _require_visit_number(upd: ChartUpdate) -> None:
    """An event about an existing visit names it in PV1-19 (``NUMBERED_ACTIONS``)."""
    if upd.visit is None:
        raise _error(f"{upd.event}: no PV1 segment; the event must name its visit (PV1-19)",
                     "missing_field", Location("PV1", 1), SEGMENT_SEQUENCE_ERROR)
    if not _visit_number(upd):
        raise RequiredFieldMissing(f"{upd.event}: no visit number (PV1-19); the event must name "
                                   "the visit it is about", Location("PV1", 1, 19))


# -- patients ---------------------------------------------------------------------------------


def _patient_by_mrn(conn: Connection, mrn: str) -> Row | None:
    return fastsql.run(conn, _select_by(cs.patients, "mrn"), {"b_value": mrn}).first()


def _patient_by_id(conn: Connection, pid: int) -> Row:
    return fastsql.run(conn, _select_by(cs.patients, "id"), {"b_value": pid}).one()


def _resolve_row(conn: Connection, mrn: str) -> Row | None:
    """The patient row an MRN now lives under (following merges and renames), or None."""
    row = _patient_by_mrn(conn, mrn)
    seen: set[str] = set()
    while row is not None and row.merged_into:
        if row.mrn in seen:  # cannot be built through apply_updates; refuse rather than loop
            raise _error(f"merge cycle through MRN {row.mrn}", "merge_conflict")
        seen.add(row.mrn)
        nxt = _patient_by_mrn(conn, row.merged_into)
        if nxt is None:
            return row
        row = nxt
    return row


def _create_patient(ctx: _Apply, mrn: str, merged_into: str | None = None) -> Row:
    row = fastsql.run(ctx.conn, _insert_returning(cs.patients), dict(
        mrn=mrn, merged_into=merged_into, merged_at=ctx.now if merged_into else None,
        created_at=ctx.now, last_event=ctx.event, **ctx.stamp())).one()
    pid = row.id
    ctx.created.add(("patients", pid))
    if merged_into:
        survivor = _patient_by_mrn(ctx.conn, merged_into)
        ctx.record(survivor.id if survivor else pid, mrn, "patients", pid, "merged_into",
                   "create_merged", None, merged_into)
    else:
        ctx.record(pid, mrn, "patients", pid, "mrn", "create", None, mrn)
    return row


def _upsert_patient(ctx: _Apply, upd: ChartUpdate, mrn: str) -> Row:
    """Find (following merges) or create the patient, and apply the demographics."""
    row = _resolve_row(ctx.conn, mrn)
    created = row is None
    if created:
        row = _create_patient(ctx, mrn)
    elif row.mrn != mrn:
        ctx.record(row.id, row.mrn, "patients", row.id, "mrn", "redirect", mrn, row.mrn)
    p = upd.patient or Patient()
    extra = {"last_event": ctx.event, "recorded_at": _newer(_plain(upd.recorded_at),
                                                            row.recorded_at)}
    if is_stale(upd.recorded_at, row.recorded_at):
        # Lists are not replaced: the stored digest (lists_digest, not in ``extra``) stays.
        ctx.record(row.id, row.mrn, "patients", row.id, None, "ignored_stale",
                   row.recorded_at, upd.recorded_at)
        ctx.set_fields(cs.patients, row, _fill_blanks(ctx, cs.patients, row, patient_values(p)), row,
                       always=extra)
    else:
        lists = _incoming_lists(upd)
        stored = parse_lists_digest(row.lists_digest)
        if lists:  # the new digests go in the UPDATE set_fields runs anyway
            extra["lists_digest"] = format_lists_digest(
                {**stored, **{field: digest for field, _, _, digest in lists}})
        ctx.set_fields(cs.patients, row, patient_values(p), row, always=extra)
        _replace_patient_lists(ctx, lists, row, stored)
    _merge_identifiers(ctx, row, _items(p.identifiers))
    _merge_names(ctx, row, _items(p.other_names))
    if created:
        ctx.release(mrn)
    return ctx.row_after  # the patients row after set_fields' UPDATE ... RETURNING (lists,
    # identifiers and names live in other tables)


def _merge_identifiers(ctx: _Apply, patient: Row, idents: list | None) -> None:
    """Add identifiers not held yet (by authority, type, value); never remove any."""
    if not idents:
        return
    t = cs.patient_identifiers
    q = _cached("identifiers", lambda: (select(t.c.authority, t.c.type, t.c.value).where(
        t.c.patient_id == bindparam("b_pid")), False))
    have = {(r.authority, r.type, r.value) for r in fastsql.run(ctx.conn, q, {"b_pid": patient.id})}
    for ident in idents:
        value = _plain(ident.value)
        if not value:
            continue
        key = (_plain(ident.authority) or "", (_plain(ident.type) or "").upper(), value)
        if key in have:
            continue
        have.add(key)
        rid = fastsql.run(ctx.conn, _insert_id(t), dict(
            patient_id=patient.id, authority=key[0], type=key[1], value=value,
            facility=_plain(ident.facility), **ctx.stamp())).scalar()
        ctx.record(patient.id, patient.mrn, t.name, rid, "identifiers", "add", None,
                   {"value": value, "authority": key[0] or None, "type": key[1] or None})


def _merge_names(ctx: _Apply, patient: Row, names: list | None) -> None:
    """Add other names (aliases, maiden, previous) not held yet; never remove any."""
    if not names:
        return
    t = cs.patient_names
    current = _list_rows(ctx.conn, t, patient.id)
    seq = len(current)
    for name in names:
        row = _name_row(name)
        if _blank({k: v for k, v in row.items() if k != "type"}) or row in current:
            continue
        current.append(row)
        seq += 1
        rid = fastsql.run(ctx.conn, _insert_id(t), dict(patient_id=patient.id, seq=seq, **row,
                                                        **ctx.stamp())).scalar()
        ctx.record(patient.id, patient.mrn, t.name, rid, "other_names", "add", None, row)


LIST_KINDS = (
    # (records attribute on Patient or ChartUpdate, table, row builder)
    ("addresses", cs.patient_addresses, _address_row),
    ("phones", cs.patient_phones, _phone_row),
    ("business_phones", cs.patient_phones, _phone_row),
    ("telecom", cs.patient_phones, _phone_row),
    ("next_of_kin", cs.next_of_kin, _nok_row),
    ("insurance", cs.insurance, _insurance_row),
    ("allergies", cs.allergies, _allergy_row),
)
PATIENT_LISTS = frozenset({"addresses", "phones", "business_phones", "telecom"})  # on Patient
# Kinds that share a table tell their rows apart by ``source`` (the kind's name): each is
# replaced on its own, so a field's ``""`` clears only the rows that field gave (v2.5.1 2.5.3).
SOURCED = frozenset({"phones", "business_phones", "telecom"})
_SOURCE_WHERE = cs.patient_phones.c.source == bindparam("b_source")


def list_scope(field: str) -> tuple[Any, dict | None, dict | None]:
    """``(where, params, extra)`` narrowing a list kind's table to its own rows."""
    if field in SOURCED:
        return _SOURCE_WHERE, {"b_source": field}, {"source": field}
    return None, None, None


def _content_columns(table) -> list[str]:
    skip = {"id", "patient_id", "seq", "message_id", "updated_at", "visit_id", "source"}
    return [c.name for c in table.columns if c.name not in skip]


def _list_rows(conn: Connection, table, patient_id: int, where=None, params: dict | None = None) -> list[dict]:
    """The patient's rows of a list table; ``where`` (with its bind ``params``) narrows it."""
    def build():
        q = (select(*[table.c[c] for c in _content_columns(table)])
             .where(table.c.patient_id == bindparam("b_pid")).order_by(table.c.seq, table.c.id))
        return (q if where is None else q.where(where)), False

    # ``where`` clauses are module-level or cached in _STMTS: their identity is a stable key
    q = _cached(("list", table.name, None if where is None else id(where)), build)
    return [dict(r._mapping) for r in fastsql.run(conn, q, {"b_pid": patient_id, **(params or {})})]


def _delete_rows(table, where=None):
    q = delete(table).where(table.c.patient_id == bindparam("b_pid"))
    return q.where(where) if where is not None else q


def _replace_list(ctx: _Apply, patient: Row, table, field: str, rows: list[dict],
                  where=None, extra: dict | None = None, params: dict | None = None) -> None:
    """Replace the patient's list (within ``where``) when it differs; history keeps the old one."""
    rows = [r for r in rows if not _blank(r)]
    owner = ("visits", params["b_visit"]) if params and "b_visit" in params else ("patients", patient.id)
    fresh = owner in ctx.created  # created in this update: nothing to read back or delete
    old = [] if fresh else _list_rows(ctx.conn, table, patient.id, where, params)
    if old == rows:
        return
    if not fresh:
        q = _cached(("delete", table.name, None if where is None else id(where)),
                    lambda: (_delete_rows(table, where), False))
        fastsql.run(ctx.conn, q, {"b_pid": patient.id, **(params or {})})
    if rows:
        fastsql.run_many(ctx.conn, _insert(table),
                         [dict(patient_id=patient.id, seq=seq, **row, **(extra or {}), **ctx.stamp())
                          for seq, row in enumerate(rows, 1)])
    ctx.record(patient.id, patient.mrn, table.name, None, field,
               "clear" if not rows else "replace", old, rows)


# -- the lists digest -------------------------------------------------------------------------
#
# Senders repeat a patient's addresses, phones, next of kin, insurance and allergies with almost
# every ADT message, so reading them back to find them unchanged was most of the list work.
# ``patients.lists_digest`` keeps, per list kind, a digest of the (non-blank) rows the last
# message that carried that list asked for; a message whose rows have the same digest is skipped
# for that kind: no SELECT, no write, no history (which is what the comparison would have
# concluded, since after every replace-or-compare the stored rows are exactly those rows).
#
# Why it is safe: the digest is only ever a reason to *skip a read*; a missing, unreadable or
# different digest means "read and compare as before". It is written in the same patients UPDATE
# (same transaction) as the lists it describes, so a rolled-back message leaves both unchanged.
# The five list tables are written only by ``_replace_list`` through ``_replace_patient_lists``
# below; ``_rename`` keeps the patient's row and its list rows (the digest stays true) and
# ``_absorb`` moves the prior patient's list rows to the survivor (``chart_absorb``) and clears
# both digests in the same transaction. ANY OTHER CODE THAT INSERTS,
# UPDATES OR DELETES ROWS OF THESE TABLES (a merge moving them, a repair tool, an import, a
# retention job) MUST CLEAR THE DIGEST of the patients concerned (``forget_lists_digest``), in
# the same transaction; otherwise a later message carrying the old list would be skipped and the
# change it should undo would stay.

_DIGEST_KINDS = tuple(field for field, _, _ in LIST_KINDS)
_DIGEST_PART = re.compile(r"([a-z_]+)=([0-9a-f]{16})")


def _list_digest(rows: list[dict]) -> str:
    """The digest of a list's rows as ``_replace_list`` would store them (pure)."""
    return hashlib.blake2b(repr(rows).encode(), digest_size=8).hexdigest()


def parse_lists_digest(text: Any) -> dict[str, str]:
    """``addresses=<hex>;phones=<hex>`` as a dict; anything unreadable is no digest at all."""
    if not text or not isinstance(text, str):
        return {}
    out: dict[str, str] = {}
    for part in text.split(";"):
        m = _DIGEST_PART.fullmatch(part)
        if m is None or m.group(1) not in _DIGEST_KINDS or m.group(1) in out:
            return {}
        out[m.group(1)] = m.group(2)
    return out


def format_lists_digest(digests: dict[str, str]) -> str | None:
    """The text stored in ``patients.lists_digest`` (kinds in LIST_KINDS order); None if empty."""
    text = ";".join(f"{k}={digests[k]}" for k in _DIGEST_KINDS if k in digests)
    return text or None


def forget_lists_digest(ctx: _Apply, *patient_ids: int) -> None:
    """Clear the lists digest of these patients: call it whenever list rows change other than
    through ``_replace_patient_lists`` (their next message then reads the rows again)."""
    t = cs.patients
    ctx.conn.execute(update(t).where(t.c.id.in_(sorted(set(patient_ids))))
                     .values(lists_digest=None))


def _incoming_lists(upd: ChartUpdate) -> list[tuple[str, Any, list[dict], str]]:
    """``(field, table, rows, digest)`` for each list kind the update carries (pure): the
    non-blank rows, as ``_replace_list`` would store them."""
    out = []
    for field, table, build in LIST_KINDS:
        source = upd.patient if field in PATIENT_LISTS else upd
        items = _items(getattr(source, field))
        if items is not None:
            rows = [r for r in (build(i) for i in items) if not _blank(r)]
            out.append((field, table, rows, _list_digest(rows)))
    return out


def _replace_patient_lists(ctx: _Apply, lists: list[tuple[str, Any, list[dict], str]],
                           patient: Row, stored: dict[str, str]) -> None:
    """Replace the lists the update carries, skipping those whose digest matches the stored one
    (see above: unchanged since the last message that carried them)."""
    for field, table, rows, digest in lists:
        if stored.get(field) != digest:
            where, params, extra = list_scope(field)
            _replace_list(ctx, patient, table, field, rows, where=where, extra=extra, params=params)


def _apply_lists(ctx: _Apply, upd: ChartUpdate, patient: Row, visit: Row | None) -> None:
    """Diagnoses belong to the visit the message is about (or to the patient if none)."""
    items = _items(upd.diagnoses)
    if items is None:
        return
    t = cs.diagnoses
    visit_id = visit.id if visit is not None else None
    key = ("diagnoses_where", visit_id is None)
    where = _STMTS.get(key)
    if where is None:
        where = _STMTS[key] = t.c.visit_id.is_(None) if visit_id is None else t.c.visit_id == bindparam("b_visit")
    _replace_list(ctx, patient, t, "diagnoses", [_diagnosis_row(d) for d in items],
                  where=where, extra={"visit_id": visit_id},
                  params=None if visit_id is None else {"b_visit": visit_id})


# -- visits -----------------------------------------------------------------------------------


def _visit_number(upd: ChartUpdate) -> str | None:
    return _plain(upd.visit.visit_number) if upd.visit is not None else None


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
            raise RequiredFieldMissing(f"{upd.event}: no prior visit number",
                                       Location("MRG", field=5))
        row = _find_visit(ctx.conn, patient.id, prior)
        if row is None:
            raise _error(f"{upd.event}: prior visit is unknown", "unknown_visit",
                         Location("MRG", field=5))
        return row
    row = _find_visit(ctx.conn, patient.id, _visit_number(upd))
    if row is None:
        raise _error(f"{upd.event}: the visit to cancel is unknown", "unknown_visit",
                     Location("PV1", field=19))
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
    return _error(f"{upd.event} cannot apply to a {status} visit", "out_of_order",
                  Location("MSH", field=9, component=2), code="207")


def transition(action: str, status: str, upd: ChartUpdate, stored: dict[str, Any],
               event_at: str | None) -> dict[str, Any]:
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
    row = conn.execute(select(h.c.old_value).where(
        h.c.table_name == "visits", h.c.row_id == visit_id, h.c.field == "status",
        h.c.new_value == status).order_by(h.c.id.desc()).limit(1)).first()
    return row.old_value if row is not None and row.old_value in STATUSES else default


def _prior_before(conn: Connection, visit_id: int, prior: str | None) -> str | None:
    """The prior location a visit had before its current one was set by a transfer (for A12;
    earlier A12s are skipped so that successive cancels walk back through the transfers)."""
    h = cs.chart_history
    row = conn.execute(select(h.c.old_value).where(
        h.c.table_name == "visits", h.c.row_id == visit_id, h.c.field == "prior_location",
        h.c.new_value == prior, h.c.event != "A12").order_by(h.c.id.desc()).limit(1)).first()
    return row.old_value if row is not None else None


def _create_visit(ctx: _Apply, patient: Row, number: str | None, status: str) -> Row:
    t = cs.visits
    row = fastsql.run(ctx.conn, _insert_returning(t), dict(
        patient_id=patient.id, visit_number=number, status=status, created_at=ctx.now,
        last_event=ctx.event, **ctx.stamp())).one()
    ctx.record(patient.id, patient.mrn, t.name, row.id, "status", "create", None, status)
    ctx.created.add(("visits", row.id))
    return row


def _renumber(ctx: _Apply, patient: Row, row: Row, number: str) -> Row:
    if _find_visit(ctx.conn, patient.id, number) is not None:
        raise _error(f"{ctx.event}: the new visit number is already in use", "merge_conflict",
                     Location("PV1", field=19), DUPLICATE_KEY_IDENTIFIER)
    ctx.set_fields(cs.visits, row, {"visit_number": number}, patient)
    return fastsql.run(ctx.conn, _select_by(cs.visits, "id"), {"b_value": row.id}).one()


def _apply_visit(ctx: _Apply, upd: ChartUpdate, patient: Row, action: str) -> Row | None:
    number = _visit_number(upd)
    v = upd.visit
    if action == "change_visit_number":
        row = _target_visit(ctx, upd, patient, action)
        if not number:
            raise RequiredFieldMissing(f"{upd.event}: no new visit number",
                                       Location("PV1", field=19))
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
        if row is not None and not number and action in ("admit", "register", "preadmit") \
                and row.status in ("discharged", "cancelled"):
            row = None  # an unnumbered new visit: the old unnumbered one is over
        if row is None:
            row = _create_visit(ctx, patient, number, initial_status(action, v))
    stored = dict(row._mapping)
    values: dict[str, Any] = {}
    stale = is_stale(upd.recorded_at, row.recorded_at)
    if stale:
        ctx.record(patient.id, patient.mrn, "visits", row.id, None, "ignored_stale",
                   row.recorded_at, upd.recorded_at)
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
    ctx.set_fields(cs.visits, row, values, patient, always={
        "last_event": ctx.event, "recorded_at": _newer(_plain(upd.recorded_at), row.recorded_at)})
    chart_locations.track(ctx, action, stored, ctx.row_after, event_at, created)
    return ctx.row_after


def _cancel_transfer(ctx: _Apply, upd: ChartUpdate, row: Row) -> dict[str, Any]:
    """A12: back to where the patient was (PV1-3 of the A12, else the stored prior location)."""
    back_to = _plain(upd.visit.location) if upd.visit is not None else None
    back_to = back_to or row.prior_location
    if not back_to:
        raise _error(f"{upd.event}: the visit has no transfer to cancel", "out_of_order",
                     Location("PV1", field=3), code="207")
    ctx.flush()
    before = _prior_before(ctx.conn, row.id, row.prior_location)
    return {"location": back_to, "prior_location": before if before else CLEAR}


# -- merges and MRN changes -------------------------------------------------------------------


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
        raise _error(f"{upd.event}: prior and surviving MRN are the same", "merge_conflict",
                     where, DUPLICATE_KEY_IDENTIFIER)
    prior = _patient_by_mrn(ctx.conn, prior_mrn)
    survivor = _resolve_row(ctx.conn, mrn)
    if prior is not None and prior.merged_into:
        done = _resolve_row(ctx.conn, prior_mrn)
        if survivor is not None and done.id == survivor.id:  # a resend: already merged
            ctx.record(survivor.id, survivor.mrn, "patients", prior.id, "merged_into",
                       "already_merged", prior_mrn, survivor.mrn)
            _upsert_patient(ctx, upd, mrn)
            return
        raise _error(f"{upd.event}: prior MRN was already merged into another patient",
                     "merge_conflict", where, DUPLICATE_KEY_IDENTIFIER)
    if prior is not None and survivor is not None and survivor.id == prior.id:
        raise _error(f"{upd.event}: surviving MRN was merged into the prior one",
                     "merge_conflict", where, DUPLICATE_KEY_IDENTIFIER)
    if rename and prior is not None and survivor is not None:
        raise _error(f"{upd.event}: the new MRN already exists; send a merge (A40) instead",
                     "merge_conflict", Location("PID", field=3), DUPLICATE_KEY_IDENTIFIER)

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
    for r in ctx.conn.execute(select(ti).where(ti.c.patient_id == prior.id,
                                               ti.c.value.in_(sorted(values)))).all():
        ctx.conn.execute(delete(ti).where(ti.c.id == r.id))
        ctx.record(prior.id, mrn, ti.name, r.id, "identifiers", "remove",
                   {"value": r.value, "authority": r.authority or None,
                    "type": r.type or None}, None)
    _create_patient(ctx, prior.mrn, merged_into=mrn)
    return _upsert_patient(ctx, upd, mrn)


def _absorb(ctx: _Apply, prior: Row, survivor: Row, carried: set[str] = frozenset(),
            cleared: set[str] = frozenset()) -> None:
    """Move the prior patient's identifiers, other names, visits and history to the survivor,
    and everything else ``chart_absorb`` describes: empty demographics filled from the prior,
    the lists the merge message does not carry (``carried``) moved, a shared visit number's
    diagnoses and locations moved; columns the merge message cleared (``""``) stay empty. Both lists digests are cleared (one statement per merge):
    list rows move here (see "the lists digest").
    """
    conn = ctx.conn
    fills = {k: v for k, v in chart_absorb.patient_fills(prior, survivor).items()
             if k not in cleared}
    if fills:
        ctx.created.discard(("patients", survivor.id))  # per-field history: values came from the prior
        ctx.set_fields(cs.patients, survivor, fills, survivor)
    forget_lists_digest(ctx, prior.id, survivor.id)
    ctx.created.clear()  # rows move to the survivor: "created here, owns nothing" no longer holds
    ti = cs.patient_identifiers
    have = {(r.authority, r.type, r.value) for r in conn.execute(
        select(ti).where(ti.c.patient_id == survivor.id))}
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
    for r in conn.execute(select(tn).where(tn.c.patient_id == prior.id)
                          .order_by(tn.c.seq)).all():
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
            ctx.record(survivor.id, survivor.mrn, "visits", v.id, "patient_id",
                       "kept_on_prior", prior.mrn, prior.mrn)
            ctx.set_fields(tv, kept, chart_absorb.visit_fills(v, kept), survivor)
            if chart_absorb.move_visit_contents(conn, v, kept, survivor.id):
                ctx.record(survivor.id, survivor.mrn, "visits", kept.id, "diagnoses", "move",
                           prior.mrn, survivor.mrn)
            continue
        conn.execute(update(tv).where(tv.c.id == v.id).values(patient_id=survivor.id))
        conn.execute(update(cs.diagnoses).where(cs.diagnoses.c.visit_id == v.id)
                     .values(patient_id=survivor.id))
        ctx.record(survivor.id, survivor.mrn, "visits", v.id, "patient_id", "move",
                   prior.mrn, survivor.mrn)
    for field, table, _ in LIST_KINDS + (("diagnoses", cs.diagnoses, None),):
        if field in carried:
            continue  # the merge message's list is the survivor's
        where = (cs.patient_phones.c.source == field if field in SOURCED else
                 cs.diagnoses.c.visit_id.is_(None) if field == "diagnoses" else None)
        if chart_absorb.move_rows(conn, table, prior.id, survivor.id, where):
            ctx.record(survivor.id, survivor.mrn, table.name, None, field, "move", prior.mrn,
                       survivor.mrn)
    h = cs.chart_history
    ctx.flush()
    conn.execute(update(h).where(h.c.patient_id == prior.id).values(patient_id=survivor.id))
    conn.execute(update(cs.patients).where(cs.patients.c.id == prior.id)
                 .values(merged_into=survivor.mrn, merged_at=ctx.now, last_event=ctx.event,
                         **ctx.stamp()))
    ctx.record(survivor.id, prior.mrn, "patients", prior.id, "merged_into", "merge", None,
               survivor.mrn)
    if moved_ids:
        ctx.record(survivor.id, survivor.mrn, ti.name, None, "identifiers", "move", prior.mrn,
                   survivor.mrn)


def _reassign_documents(ctx: _Apply, from_mrn: str, to_mrn: str) -> None:
    reassign = _optional("interface.documents", "reassign_patient")
    if reassign is not None:
        reassign(ctx.conn, from_mrn, to_mrn, ctx.now)


# ---------------------------------------------------------------------------------------------
# The read side.


def resolve_mrn(conn: Connection, mrn: str) -> str | None:
    """The MRN a patient now lives under (following merges and MRN changes); None if unknown."""
    try:
        row = _resolve_row(conn, mrn)
    except PermanentError:
        return None
    return row.mrn if row is not None else None


def _merged_from(conn: Connection, mrn: str) -> list[str]:
    """Every MRN merged (directly or through a chain) into this one."""
    out: list[str] = []
    todo = [mrn]
    while todo:
        rows = conn.execute(select(cs.patients.c.mrn).where(
            cs.patients.c.merged_into.in_(todo)).order_by(cs.patients.c.mrn)).all()
        todo = [r.mrn for r in rows if r.mrn not in out and r.mrn != mrn]
        out.extend(todo)
    return out


def _name_json(m: Any, prefix: str = "") -> dict[str, Any]:
    return {p: m[prefix + p] for p in ("family", "given", "middle", "prefix", "suffix",
                                       "degree")}


def _person_json(m: Any, prefix: str) -> dict[str, Any] | None:
    out = {p: m[prefix + p] for p in ("id", "family", "given", "authority")}
    return out if any(v is not None for v in out.values()) else None


def _address_json(m: Any, prefix: str = "") -> dict[str, Any]:
    return {p: m[prefix + p] for p in ("street", "other", "city", "state", "postal_code",
                                       "country")}


def _visit_json(m: Any) -> dict[str, Any]:
    return {
        "visit_number": m["visit_number"], "visit_authority": m["visit_authority"],
        "class": m["class"], "status": m["status"], "location": m["location"],
        "prior_location": m["prior_location"], "attending": _person_json(m, "attending_"),
        "referring": _person_json(m, "referring_"), "hospital_service": m["hospital_service"],
        "admit_source": m["admit_source"], "admission_type": m["admission_type"],
        "discharge_disposition": m["discharge_disposition"], "admitted_at": m["admitted_at"],
        "discharged_at": m["discharged_at"], "expected_admit_at": m["expected_admit_at"],
        "updated_at": _iso(m["updated_at"]),
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _rows(conn: Connection, table, patient_id: int) -> list[Any]:
    return [r._mapping for r in conn.execute(
        select(table).where(table.c.patient_id == patient_id).order_by(table.c.seq, table.c.id))]


_PHONE_ORDER = {"phones": 0, "business_phones": 1, "telecom": 2}  # PID-13, PID-14, PID-40


def get_chart(conn: Connection, mrn: str) -> dict | None:
    """The chart record of PRODUCT.md for an MRN, or None if unknown.

    A merged-away MRN answers with the survivor's chart: ``mrn`` is the survivor,
    ``requested_mrn`` the MRN asked for, ``merged_into`` the survivor (null when the requested MRN
    is itself the survivor) and ``merged_from`` every MRN merged into the survivor.
    """
    row = _resolve_row(conn, mrn)
    if row is None:
        return None
    p = row._mapping
    ti = cs.patient_identifiers
    identifiers = [{"value": r.value, "authority": r.authority or None, "type": r.type or None}
                   for r in conn.execute(select(ti).where(ti.c.patient_id == row.id)
                                         .order_by(ti.c.id))]
    tv = cs.visits
    visit_rows = conn.execute(select(tv).where(tv.c.patient_id == row.id)
                              .order_by(tv.c.created_at.desc(), tv.c.id.desc())).all()
    visit_numbers = {v.id: v.visit_number for v in visit_rows}
    locations = chart_locations.locations_for(conn, list(visit_numbers))
    summaries = _optional("interface.documents", "summaries_for")
    return {
        "mrn": row.mrn,
        "requested_mrn": mrn,
        "merged_into": row.mrn if row.mrn != mrn else None,
        "merged_from": _merged_from(conn, row.mrn),
        "identifiers": identifiers,
        "name": {**_name_json(p), "type": p["name_type"]},
        "other_names": [{**_name_json(n), "type": n["type"]}
                        for n in _rows(conn, cs.patient_names, row.id)],
        "birth_date": p["birth_date"],
        "sex": p["sex"],
        "mother_maiden_name": p["mother_maiden_name"],
        "race": p["race"], "ethnicity": p["ethnicity"], "marital_status": p["marital_status"],
        "language": p["language"], "religion": p["religion"], "ssn": p["ssn"],
        "death_at": p["death_at"], "deceased": p["deceased"],
        "addresses": [{**_address_json(a), "type": a["type"]}
                      for a in _rows(conn, cs.patient_addresses, row.id)],
        "phones": [{k: ph[k] for k in ("number", "use", "equipment", "email", "source")}
                   for ph in sorted(_rows(conn, cs.patient_phones, row.id),
                                    key=lambda ph: _PHONE_ORDER.get(ph["source"], 0))],
        "insurance": [{
            "plan": i["plan"], "company": i["company"], "company_id": i["company_id"],
            "member_id": i["member_id"], "group": i["group_number"],
            "group_name": i["group_name"], "effective": i["effective"],
            "expiration": i["expiration"], "insured_name": _name_json(i, "insured_"),
            "relationship": i["relationship"], "priority": i["priority"],
        } for i in _rows(conn, cs.insurance, row.id)],
        "visits": [{**_visit_json(v._mapping), "locations": locations.get(v.id, [])}
                   for v in visit_rows],
        "documents": list(summaries(conn, row.mrn)) if summaries is not None else [],
        "next_of_kin": [{
            "name": _name_json(n), "relationship": n["relationship"], "phone": n["phone"],
            "address": _address_json(n, "address_"), "contact_role": n["contact_role"],
        } for n in _rows(conn, cs.next_of_kin, row.id)],
        "allergies": [{k: a[k] for k in ("code", "description", "type", "severity", "reaction",
                                         "identified")}
                      for a in _rows(conn, cs.allergies, row.id)],
        "diagnoses": [{**{k: d[k] for k in ("code", "description", "coding_system", "type",
                                            "at")},
                       "visit_number": visit_numbers.get(d["visit_id"])}
                      for d in _rows(conn, cs.diagnoses, row.id)],
        "updated_at": _iso(p["updated_at"]),
        "last_event": p["last_event"],
    }


def _like_prefix(value: str) -> str:
    """A LIKE pattern matching values that start with ``value`` (wildcards taken literally)."""
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def search_patients(conn: Connection, family: str | None = None, given: str | None = None,
                    birth_date: str | None = None, limit: int = 50,
                    offset: int = 0) -> list[dict]:
    """Patients (not merged-away MRNs) whose names start with the given text, case-insensitive,
    and whose birth date starts with ``birth_date`` (``1980``, ``1980-01``, ``1980-01-31``).
    Ordered by family, given, MRN; paged by ``limit``/``offset``."""
    t = cs.patients
    q = select(t).where(t.c.merged_into.is_(None))
    if family:
        q = q.where(func.lower(t.c.family).like(_like_prefix(family.strip()), escape="\\"))
    if given:
        q = q.where(func.lower(t.c.given).like(_like_prefix(given.strip()), escape="\\"))
    if birth_date:
        q = q.where(t.c.birth_date.like(_like_prefix(birth_date.strip()), escape="\\"))
    q = q.order_by(t.c.family, t.c.given, t.c.mrn).limit(max(0, int(limit)))
    q = q.offset(max(0, int(offset)))
    return [{"mrn": r.mrn, "name": {**_name_json(r._mapping), "type": r.name_type},
             "birth_date": r.birth_date, "sex": r.sex} for r in conn.execute(q)]


def history(conn: Connection, mrn: str) -> list[dict]:
    """What each message changed on this patient's chart (merged-in patients included), oldest
    first: ``{at, message_id, event, mrn, table, row_id, field, action, old, new}``."""
    row = _resolve_row(conn, mrn)
    if row is None:
        return []
    h = cs.chart_history
    return [{"at": _iso(r.at), "message_id": r.message_id, "event": r.event, "mrn": r.mrn,
             "table": r.table_name, "row_id": r.row_id, "field": r.field, "action": r.action,
             "old": r.old_value, "new": r.new_value}
            for r in conn.execute(select(h).where(h.c.patient_id == row.id).order_by(h.c.id))]
