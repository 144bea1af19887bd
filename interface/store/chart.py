"""The chart store: applies ``ChartUpdate`` records with ADT event semantics, and reads charts.

Write side: :func:`apply_updates` runs inside the caller's transaction and never commits; it
returns the list of changes it made (the same rows it writes to ``chart_history``), so
``interface test --channel`` can run it in a rolled-back transaction to show what a message would
change. Problems a clerk must look at raise :class:`~interface.hl7.errors.HL7Error` subclasses whose
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

import importlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection, Row

from interface.hl7.errors import (
    SEGMENT_SEQUENCE_ERROR,
    UNKNOWN_KEY_IDENTIFIER,
    Location,
    PermanentError,
    RequiredFieldMissing,
)
from interface.mapping.records import (
    CLEAR,
    Address,
    ChartUpdate,
    Insurance,
    Name,
    NextOfKin,
    Patient,
    Person,
    Visit,
)
from interface.store import chart_schema as cs
from interface.store import fastsql

STATUSES = ("preadmit", "admitted", "registered", "discharged", "cancelled")


@dataclass(frozen=True)
class EventRule:
    """What a trigger event does: to the patient (``upsert``, ``merge``, ``rename``) and to the
    visit (an action name below, or None for patient-only events)."""

    visit: str | None
    patient: str = "upsert"


# Visit actions that need the visit to exist already (an unknown one is ``unknown_visit``).
CANCEL_ACTIONS = frozenset(
    {"cancel_admit", "cancel_transfer", "cancel_discharge", "cancel_preadmit", "change_visit_number"}
)

# Visit actions about a visit that exists (or, sent before its A01, is the same visit): PV1-19
# is required, so that the event can never create or change a visit without a number (101 at
# PV1-19; no PV1 at all: 100 at PV1). A01/A04/A05/A14 may start an unnumbered visit and A08 /
# A54 / A55 update one without a number, as before; A50 checks MRG-5 and PV1-19 itself.
NUMBERED_ACTIONS = frozenset(
    {
        "transfer",
        "discharge",
        "to_inpatient",
        "to_outpatient",
        "cancel_admit",
        "cancel_transfer",
        "cancel_discharge",
        "cancel_preadmit",
    }
)

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
    if value.__class__ is str:  # the common case first
        return value if value.strip() else None
    if value is None or value is CLEAR:
        return value
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _plain(value: Any) -> str | None:
    """A list item's value: CLEAR and empty both mean nothing."""
    if value.__class__ is str:  # _scalar's common case, without the call
        return value if value.strip() else None
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
    for col in (
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
    ):
        out[col] = _scalar(getattr(p, col))
    return out


def visit_values(v: Visit) -> dict[str, Any]:
    """Column -> value/None/CLEAR for the visits row (details, not the status)."""
    out = {"visit_authority": _scalar(v.visit_authority), "class": _scalar(v.class_)}
    for col in (
        "location",
        "prior_location",
        "hospital_service",
        "admit_source",
        "admission_type",
        "discharge_disposition",
        "admitted_at",
        "discharged_at",
        "expected_admit_at",
    ):
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
    row.update(
        relationship=_plain(n.relationship), phone=_plain(n.phone), contact_role=_plain(n.contact_role)
    )
    row.update(_clean(_address_parts(n.address, "address_")))
    return row


def _insurance_row(i: Insurance) -> dict[str, Any]:
    row = {
        k: _plain(getattr(i, k))
        for k in (
            "plan",
            "company_id",
            "company",
            "group_name",
            "effective",
            "expiration",
            "member_id",
            "relationship",
            "priority",
        )
    }
    row["group_number"] = _plain(i.group)
    row.update(_clean(_name_parts(i.insured_name, "insured_")))
    return row


def _allergy_row(a) -> dict[str, Any]:
    return {
        k: _plain(getattr(a, k))
        for k in ("code", "description", "type", "severity", "reaction", "identified")
    }


def _diagnosis_row(d) -> dict[str, Any]:
    return {k: _plain(getattr(d, k)) for k in ("code", "description", "coding_system", "type", "at")}


def _blank(row: dict[str, Any]) -> bool:
    for v in row.values():  # a loop, not all(<generator>): some eight rows a message
        if v is not None:
            return False
    return True


def _text(value: Any) -> str | None:
    """A history cell: text as is, structures as JSON."""
    if value is None or isinstance(value, str):
        return value
    return _HISTORY_JSON(value)


# what json.dumps(value, sort_keys=True, default=str) gives, without building an encoder per call
_HISTORY_JSON = json.JSONEncoder(sort_keys=True, default=str).encode


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
    touched = {
        r.field
        for r in ctx.conn.execute(
            select(h.c.field)
            .distinct()
            .where(h.c.table_name == table.name, h.c.row_id == row.id, h.c.field.is_not(None))
        )
    }
    current = row._mapping
    return {
        k: v
        for k, v in values.items()
        if v is not None and v is not CLEAR and current[k] is None and k not in touched
    }


def _error(
    text: str, reason: str, location: Location | None = None, code: str = UNKNOWN_KEY_IDENTIFIER
) -> PermanentError:
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
    return _cached(("insert_returning", table.name), lambda: (insert(table).returning(*table.c), True))


def _update_by_id(table) -> fastsql.Statement:
    """UPDATE table SET <the parameter keys> WHERE id = :b_id."""
    return _cached(
        ("update", table.name), lambda: (update(table).where(table.c.id == bindparam("b_id")), True)
    )


def _update_returning(table) -> fastsql.Statement:
    """UPDATE table SET <the parameter keys> WHERE id = :b_id RETURNING the whole row."""
    return _cached(
        ("update_returning", table.name),
        lambda: (update(table).where(table.c.id == bindparam("b_id")).returning(*table.c), True),
    )


def _select_by(table, column: str) -> fastsql.Statement:
    return _cached(
        ("select", table.name, column),
        lambda: (select(table).where(table.c[column] == bindparam("b_value")), False),
    )


class _Apply:
    """One update being applied: the connection, the message, the change log."""

    def __init__(self, conn: Connection, message_id: int, now: datetime, event: str, changes: list[dict]):
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
        # patient rows read before this update wrote anything (apply_updates(resolved=))
        self.resolved: dict[str, Row | None] = {}

    def resolve(self, mrn: str) -> Row | None:
        """``_resolve_row``, or the row the identity check already read for this MRN (valid
        until this update writes the patient: each use below is before the first write)."""
        if mrn in self.resolved:
            return self.resolved[mrn]
        return _resolve_row(self.conn, mrn)

    def flush(self) -> None:
        """Write the buffered history rows (one executemany); call before reading history."""
        if self.pending:
            fastsql.run_many(self.conn, _insert(cs.chart_history), self.pending)
            self.pending = []

    def record(
        self,
        patient_id: int | None,
        mrn: str | None,
        table: str,
        row_id: int | None,
        field: str | None,
        action: str,
        old: Any = None,
        new: Any = None,
    ) -> None:
        self.changes.append(
            {
                "mrn": mrn,
                "table": table,
                "row_id": row_id,
                "field": field,
                "action": action,
                "old": old,
                "new": new,
                "event": self.event,
            }
        )
        self.pending.append(
            dict(
                patient_id=patient_id,
                mrn=mrn,
                table_name=table,
                row_id=row_id,
                field=field,
                action=action,
                old_value=_text(old),
                new_value=_text(new),
                message_id=self.message_id,
                event=self.event,
                at=self.now,
            )
        )

    def stamp(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "updated_at": self.now}

    def set_fields(
        self, table, row: Row, values: dict[str, Any], patient: Row, always: dict[str, Any] | None = None
    ) -> dict:
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
                self.record(
                    patient.id,
                    patient.mrn,
                    table.name,
                    row.id,
                    col,
                    "clear" if new is None else "set",
                    old,
                    new,
                )
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
        release_held = _optional("interface.store.workqueue", "release_held")
        if release_held is not None:
            release_held(self.conn, mrn, self.now)


def _require_visit_number(upd: ChartUpdate) -> None:
    """An event about an existing visit names it in PV1-19 (``NUMBERED_ACTIONS``)."""
    if upd.visit is None:
        raise _error(
            f"{upd.event}: no PV1 segment; the event must name its visit (PV1-19)",
            "missing_field",
            Location("PV1", 1),
            SEGMENT_SEQUENCE_ERROR,
        )
    if not _visit_number(upd):
        raise RequiredFieldMissing(
            f"{upd.event}: no visit number (PV1-19); the event must name the visit it is about",
            Location("PV1", 1, 19),
        )


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


def _visit_number(upd: ChartUpdate) -> str | None:
    return _plain(upd.visit.visit_number) if upd.visit is not None else None


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
        rows = conn.execute(
            select(cs.patients.c.mrn).where(cs.patients.c.merged_into.in_(todo)).order_by(cs.patients.c.mrn)
        ).all()
        todo = [r.mrn for r in rows if r.mrn not in out and r.mrn != mrn]
        out.extend(todo)
    return out
