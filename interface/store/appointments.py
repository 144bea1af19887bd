"""Appointments: apply SIU scheduling records, and read them for chart preparation.

Store functions take a :class:`sqlalchemy.engine.Connection` inside the caller's transaction and
never commit. What each event does (HL7 v2.5.1 chapter 10, trigger events 10.3.1-10.3.14):

========  ===========================================================================
S12       new appointment booked: creates the row (status SCH-25, else ``booked``). An
          appointment id already on file is refused (205 at SCH-2, or SCH-1): a new booking
          never overwrites a stored one (a resend of the same message is a duplicate before
          it gets here). A deleted appointment's id may be booked again.
S13       rescheduled: new start / end / duration / resources; status SCH-25 if sent
S14       modified: what the message sends replaces what is stored (empty fields keep it)
S15       cancelled: status ``cancelled`` (SCH-6 the reason)
S16       discontinued: status ``discontinued``
S17       deleted: status ``deleted`` (the row stays, for the record; it is no longer listed)
S26       patient did not show up: status ``noshow``
========  ===========================================================================

S13-S17 and S26 for an appointment not on file are a ``PermanentError(reason=
"unknown_appointment")`` (204) at SCH-2 (SCH-1 when only the placer id was sent): the messages of
one patient arrive in order (the queue's promise), so it is something for a clerk to look at,
not to guess. The filler id (SCH-2) names the appointment first; the placer id (SCH-1) when the
sender gives no filler id (or a filler id the store has not seen, for an appointment booked with
the placer id only).

Unknown patient: ``Hold(reason="unknown_patient")`` before anything is written (like the
document index); the queue retries when the patient's ADT arrives. An appointment is never moved
to another patient: a known id whose patient is a different (non-merged) chart is an error.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from interface.hl7 import errors
from interface.hl7.errors import HL7Error, Hold, Location, PermanentError, RequiredFieldMissing
from interface.mapping.records import CLEAR, Appointment
from interface.store.appointment_schema import appointments as t

# event -> the status it sets (None: SCH-25 decides, else the stored status stays)
EVENTS: dict[str, str | None] = {
    "S12": None,
    "S13": None,
    "S14": None,
    "S15": "cancelled",
    "S16": "discontinued",
    "S17": "deleted",
    "S26": "noshow",
}
# Statuses in words (table 0278), for pages and the terminal.
STATUS_LABELS = {
    "pending": "Pending",
    "waitlist": "Wait list",
    "booked": "Booked",
    "started": "Started",
    "complete": "Complete",
    "cancelled": "Cancelled",
    "discontinued": "Discontinued",
    "deleted": "Deleted",
    "blocked": "Blocked",
    "overbooked": "Overbooked",
    "noshow": "Did not attend",
}
_SCH1 = Location("SCH", 1, 1)
_SCH2 = Location("SCH", 1, 2)
_PID3 = Location("PID", 1, 3)

# Record fields copied to the columns of the same name (provider is spread over four).
_PLAIN = ("start_at", "end_at", "duration", "duration_units", "location", "reason", "type", "event_reason")


def _text(value: Any) -> Any:
    """None (no change), CLEAR (clear) or the stripped text ('' counts as no value)."""
    if value is None or value is CLEAR:
        return value
    value = str(value).strip()
    return value or None


def _utc(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _end_from_duration(start: str | None, duration: str | None, units: str | None) -> str | None:
    """The end time from start + duration when the sender gives no end (units: minutes unless
    they say hours or seconds)."""
    begin = _utc(start)
    if begin is None or not duration:
        return None
    try:
        amount = float(duration)
    except ValueError:
        return None
    unit = (units or "MIN").strip().upper()
    seconds = {"S": 1, "SEC": 1, "H": 3600, "HR": 3600, "HOUR": 3600, "HOURS": 3600, "D": 86400}.get(unit, 60)
    dt = datetime.fromisoformat(start) + timedelta(seconds=amount * seconds)  # keeps the sender's offset
    return dt.isoformat()


def _ident(appt: Appointment) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    filler = _text(appt.filler_id)
    placer = _text(appt.placer_id)
    f = (filler, _text(appt.filler_namespace) or "") if isinstance(filler, str) else None
    p = (placer, _text(appt.placer_namespace) or "") if isinstance(placer, str) else None
    return f, p


def _label(ident: tuple[str, str]) -> str:
    return ident[0] + (f" ({ident[1]})" if ident[1] else "")


def find(conn: Connection, filler: tuple[str, str] | None, placer: tuple[str, str] | None) -> dict | None:
    """The stored appointment the ids name (deleted ones included), filler id first."""
    for ident, id_col, ns_col in (
        (filler, t.c.filler_id, t.c.filler_namespace),
        (placer, t.c.placer_id, t.c.placer_namespace),
    ):
        if ident is None:
            continue
        row = (
            conn.execute(select(t).where(id_col == ident[0], ns_col == ident[1]).order_by(t.c.id.desc()))
            .mappings()
            .first()
        )
        if row is not None:
            return dict(row)
    return None


def _resolve_mrn(conn: Connection, mrn: str) -> str | None:
    from interface.store.chart import resolve_mrn

    return resolve_mrn(conn, mrn)


def apply_appointments(
    conn: Connection, records: list[Appointment], *, message_id: int | None, now: datetime
) -> list[dict]:
    """Apply the appointments of one SIU message in the caller's transaction (never commits).

    Returns one change per appointment: ``{appointment_id, event, action, status, mrn}``, action
    one of ``booked``, ``rescheduled``, ``modified``, ``cancelled``, ``discontinued``,
    ``deleted``, ``noshow``. Raises ``Hold`` (unknown patient), ``PermanentError`` (unknown or
    duplicate appointment, another patient's appointment), ``RequiredFieldMissing`` or
    ``HL7Error`` (unsupported event)."""
    return [_apply_one(conn, a, message_id=message_id, now=now) for a in records]


def _apply_one(conn: Connection, appt: Appointment, *, message_id: int | None, now: datetime) -> dict:
    event = (appt.event or "").strip().upper()
    if event not in EVENTS:
        raise HL7Error(
            f"unsupported scheduling event {event or '(none)'}",
            Location("MSH", 1, 9, component=2),
            code=errors.UNSUPPORTED_EVENT_CODE,
            reason="unsupported_event",
        )
    filler, placer = _ident(appt)
    where = _SCH2 if filler is not None or placer is None else _SCH1
    if filler is None and placer is None:
        raise RequiredFieldMissing("an appointment ID (SCH-2 filler, or SCH-1 placer) is required", _SCH2)
    given_mrn = _text(appt.mrn)
    if not isinstance(given_mrn, str):
        raise RequiredFieldMissing("patient identifier (PID-3) is required", _PID3)
    mrn = _resolve_mrn(conn, given_mrn)
    if mrn is None:
        raise Hold("unknown patient", reason="unknown_patient")

    existing = find(conn, filler, placer)
    if existing is not None and existing["status"] == "deleted" and event == "S12":
        existing = None  # a deleted appointment's number booked again: a new row
    ident = filler or placer
    assert ident is not None
    if event == "S12":
        if existing is not None:
            raise PermanentError(
                f"S12: appointment {_label(ident)} is already booked; a change of an appointment "
                "is an S13 (reschedule) or S14 (modification)",
                where,
                code=errors.DUPLICATE_KEY_IDENTIFIER,
                reason="duplicate_appointment",
            )
    elif existing is None:
        raise PermanentError(
            f"{event}: appointment {_label(ident)} is not on file",
            where,
            code=errors.UNKNOWN_KEY_IDENTIFIER,
            reason="unknown_appointment",
        )
    if existing is not None:
        owner = _resolve_mrn(conn, existing["mrn"]) or existing["mrn"]
        if owner != mrn:
            raise PermanentError(
                f"{event}: appointment {_label(ident)} belongs to another patient",
                _PID3,
                code=errors.UNKNOWN_KEY_IDENTIFIER,
                reason="unknown_appointment",
            )

    values: dict[str, Any] = {}
    for name in _PLAIN:
        v = _text(getattr(appt, name))
        if v is not None:
            values[name] = None if v is CLEAR else v
    p = appt.provider
    for part in ("id", "family", "given", "authority"):
        v = _text(getattr(p, part)) if p is not None else None
        if v is not None:
            values["provider_" + part] = None if v is CLEAR else v
    if filler is not None:
        values["filler_id"], values["filler_namespace"] = filler
    if placer is not None:
        values["placer_id"], values["placer_namespace"] = placer
    sent_status = _text(appt.status)
    status = EVENTS[event] or (sent_status if isinstance(sent_status, str) else None)
    if status is not None:
        values["status"] = status.lower() if status.lower() in STATUS_LABELS else status
    elif existing is None:
        values["status"] = "booked"
    merged = {**(existing or {}), **values}
    if "end_at" not in values and ("start_at" in values or "duration" in values):
        # a new start or length without an end: the end follows (or is unknown, never stale)
        values["end_at"] = _end_from_duration(
            merged.get("start_at"), merged.get("duration"), merged.get("duration_units")
        )
    if "start_at" in values:
        values["start_utc"] = _utc(values["start_at"])
    values.update(mrn=mrn, last_event=event, message_id=message_id, updated_at=now)
    if existing is None:
        values["created_at"] = now
        row_id = conn.execute(insert(t).values(**values)).inserted_primary_key[0]
        action = "booked"
    else:
        row_id = existing["id"]
        conn.execute(update(t).where(t.c.id == row_id).values(**values))
        action = {"S12": "booked", "S13": "rescheduled", "S14": "modified"}.get(event) or EVENTS[event]
    return {
        "appointment_id": row_id,
        "event": event,
        "action": action,
        "status": values.get("status", (existing or {}).get("status")),
        "mrn": mrn,
    }


# ---------------------------------------------------------------------------------------------
# read


def _out(row: Any) -> dict:
    r = dict(row)
    start = r.pop("start_utc", None)
    r["start_utc"] = (
        start.replace(tzinfo=timezone.utc).isoformat()
        if start and start.tzinfo is None
        else (start.isoformat() if start else None)
    )
    for k in ("created_at", "updated_at"):
        if r.get(k) is not None:
            r[k] = r[k].isoformat()
    r["provider"] = {k: r.pop("provider_" + k) for k in ("id", "family", "given", "authority")}
    r["status_label"] = STATUS_LABELS.get(r["status"], r["status"])
    return r


def list_appointments(
    conn: Connection,
    *,
    mrns: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    statuses: list[str] | None = None,
) -> list[dict]:
    """Appointments by start time (then id); ``start``/``end`` bound ``start_utc`` inclusively;
    deleted ones only when ``statuses`` asks for them."""
    q = select(t)
    if mrns is not None:
        q = q.where(t.c.mrn.in_(mrns))
    if start is not None:
        q = q.where(t.c.start_utc >= start.astimezone(timezone.utc))
    if end is not None:
        q = q.where(t.c.start_utc <= end.astimezone(timezone.utc))
    if statuses is not None:
        q = q.where(t.c.status.in_(list(statuses)))
    else:
        q = q.where(t.c.status != "deleted")
    q = q.order_by(t.c.start_utc, t.c.id)
    return [_out(r) for r in conn.execute(q).mappings()]
