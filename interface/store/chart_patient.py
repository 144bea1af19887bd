"""The patient row and its list-valued parts (addresses, phones, names,
identifiers, next of kin, insurance, allergies, diagnoses): replaced per field, with digests.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Connection, Row

from interface.mapping.records import CLEAR, ChartUpdate, Patient
from interface.store import chart_schema as cs
from interface.store import fastsql
from interface.store.chart import (
    _STMTS,
    _address_row,
    _allergy_row,
    _Apply,
    _blank,
    _cached,
    _diagnosis_row,
    _fill_blanks,
    _insert,
    _insert_id,
    _insert_returning,
    _insurance_row,
    _items,
    _name_row,
    _newer,
    _nok_row,
    _patient_by_mrn,
    _phone_row,
    _plain,
    is_stale,
    patient_values,
)


def _create_patient(
    ctx: _Apply, mrn: str, merged_into: str | None = None, first: dict[str, Any] | None = None
) -> Row:
    """INSERT the patient; ``first``: more columns for the same INSERT (the demographics and
    bookkeeping of the message that creates the chart, ``_upsert_patient``)."""
    row = fastsql.run(
        ctx.conn,
        _insert_returning(cs.patients),
        dict(
            mrn=mrn,
            merged_into=merged_into,
            merged_at=ctx.now if merged_into else None,
            created_at=ctx.now,
            last_event=ctx.event,
            **ctx.stamp(),
            **(first or {}),
        ),
    ).one()
    pid = row.id
    ctx.created.add(("patients", pid))
    if merged_into:
        survivor = _patient_by_mrn(ctx.conn, merged_into)
        ctx.record(
            survivor.id if survivor else pid,
            mrn,
            "patients",
            pid,
            "merged_into",
            "create_merged",
            None,
            merged_into,
        )
    else:
        ctx.record(pid, mrn, "patients", pid, "mrn", "create", None, mrn)
    return row


def _upsert_patient(ctx: _Apply, upd: ChartUpdate, mrn: str) -> Row:
    """Find (following merges) or create the patient, and apply the demographics."""
    row = ctx.resolve(mrn)
    ctx.resolved = {}  # written below: read afresh from here on
    if row is None:
        return _new_patient(ctx, upd, mrn)
    if row.mrn != mrn:
        ctx.record(row.id, row.mrn, "patients", row.id, "mrn", "redirect", mrn, row.mrn)
    p = upd.patient or Patient()
    extra = {"last_event": ctx.event, "recorded_at": _newer(_plain(upd.recorded_at), row.recorded_at)}
    if is_stale(upd.recorded_at, row.recorded_at):
        # Lists are not replaced: the stored digest (lists_digest, not in ``extra``) stays.
        ctx.record(
            row.id, row.mrn, "patients", row.id, None, "ignored_stale", row.recorded_at, upd.recorded_at
        )
        ctx.set_fields(
            cs.patients, row, _fill_blanks(ctx, cs.patients, row, patient_values(p)), row, always=extra
        )
    else:
        lists = _incoming_lists(upd)
        stored = parse_lists_digest(row.lists_digest)
        if lists:  # the new digests go in the UPDATE set_fields runs anyway
            extra["lists_digest"] = format_lists_digest(
                {**stored, **{field: digest for field, _, _, digest in lists}}
            )
        ctx.set_fields(cs.patients, row, patient_values(p), row, always=extra)
        _replace_patient_lists(ctx, lists, row, stored)
    _merge_identifiers(ctx, row, _items(p.identifiers))
    _merge_names(ctx, row, _items(p.other_names))
    return ctx.row_after  # the patients row after set_fields' UPDATE ... RETURNING (lists,
    # identifiers and names live in other tables)


def _new_patient(ctx: _Apply, upd: ChartUpdate, mrn: str) -> Row:
    """``_upsert_patient`` for an MRN with no chart: the demographics go in the INSERT itself
    (one statement, not an INSERT and an UPDATE), with the history ``set_fields`` gives a row
    this update created — ``create``, then one ``initial`` entry with its first values."""
    p = upd.patient or Patient()
    lists = _incoming_lists(upd)
    values = {col: v for col, v in patient_values(p).items() if v is not None and v is not CLEAR}
    first: dict[str, Any] = {**values, "recorded_at": _newer(_plain(upd.recorded_at), None)}
    if lists:
        first["lists_digest"] = format_lists_digest({field: digest for field, _, _, digest in lists})
    row = _create_patient(ctx, mrn, first=first)
    if values:
        ctx.record(row.id, row.mrn, "patients", row.id, None, "initial", None, values)
    ctx.row_after = row
    _replace_patient_lists(ctx, lists, row, {})
    _merge_identifiers(ctx, row, _items(p.identifiers))
    _merge_names(ctx, row, _items(p.other_names))
    ctx.release(mrn)
    return row


def _merge_identifiers(ctx: _Apply, patient: Row, idents: list | None) -> None:
    """Add identifiers not held yet (by authority, type, value); never remove any."""
    if not idents:
        return
    t = cs.patient_identifiers
    q = _cached(
        "identifiers",
        lambda: (
            select(t.c.authority, t.c.type, t.c.value).where(t.c.patient_id == bindparam("b_pid")),
            False,
        ),
    )
    have: set[tuple] = set()
    if ("patients", patient.id) not in ctx.created:  # a patient created here holds none yet
        have = {(r.authority, r.type, r.value) for r in fastsql.run(ctx.conn, q, {"b_pid": patient.id})}
    for ident in idents:
        value = _plain(ident.value)
        if not value:
            continue
        key = (_plain(ident.authority) or "", (_plain(ident.type) or "").upper(), value)
        if key in have:
            continue
        have.add(key)
        rid = fastsql.run(
            ctx.conn,
            _insert_id(t),
            dict(
                patient_id=patient.id,
                authority=key[0],
                type=key[1],
                value=value,
                facility=_plain(ident.facility),
                **ctx.stamp(),
            ),
        ).scalar()
        ctx.record(
            patient.id,
            patient.mrn,
            t.name,
            rid,
            "identifiers",
            "add",
            None,
            {"value": value, "authority": key[0] or None, "type": key[1] or None},
        )


def _merge_names(ctx: _Apply, patient: Row, names: list | None) -> None:
    """Add other names (aliases, maiden, previous) not held yet; never remove any."""
    if not names:
        return
    t = cs.patient_names
    current = [] if ("patients", patient.id) in ctx.created else _list_rows(ctx.conn, t, patient.id)
    seq = len(current)
    for name in names:
        row = _name_row(name)
        if _blank({k: v for k, v in row.items() if k != "type"}) or row in current:
            continue
        current.append(row)
        seq += 1
        rid = fastsql.run(
            ctx.conn, _insert_id(t), dict(patient_id=patient.id, seq=seq, **row, **ctx.stamp())
        ).scalar()
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


def _list_rows(
    conn: Connection, table, patient_id: int, where=None, params: dict | None = None
) -> list[dict]:
    """The patient's rows of a list table; ``where`` (with its bind ``params``) narrows it."""

    def build():
        q = (
            select(*[table.c[c] for c in _content_columns(table)])
            .where(table.c.patient_id == bindparam("b_pid"))
            .order_by(table.c.seq, table.c.id)
        )
        return (q if where is None else q.where(where)), False

    # ``where`` clauses are module-level or cached in _STMTS: their identity is a stable key
    q = _cached(("list", table.name, None if where is None else id(where)), build)
    return [dict(r._mapping) for r in fastsql.run(conn, q, {"b_pid": patient_id, **(params or {})})]


def _delete_rows(table, where=None):
    q = delete(table).where(table.c.patient_id == bindparam("b_pid"))
    return q.where(where) if where is not None else q


def _replace_list(
    ctx: _Apply,
    patient: Row,
    table,
    field: str,
    rows: list[dict],
    where=None,
    extra: dict | None = None,
    params: dict | None = None,
) -> None:
    """Replace the patient's list (within ``where``) when it differs; history keeps the old one."""
    rows = [r for r in rows if not _blank(r)]
    owner = ("visits", params["b_visit"]) if params and "b_visit" in params else ("patients", patient.id)
    fresh = owner in ctx.created  # created in this update: nothing to read back or delete
    old = [] if fresh else _list_rows(ctx.conn, table, patient.id, where, params)
    if old == rows:
        return
    if not fresh:
        q = _cached(
            ("delete", table.name, None if where is None else id(where)),
            lambda: (_delete_rows(table, where), False),
        )
        fastsql.run(ctx.conn, q, {"b_pid": patient.id, **(params or {})})
    if rows:
        fastsql.run_many(
            ctx.conn,
            _insert(table),
            [
                dict(patient_id=patient.id, seq=seq, **row, **(extra or {}), **ctx.stamp())
                for seq, row in enumerate(rows, 1)
            ],
        )
    ctx.record(
        patient.id, patient.mrn, table.name, None, field, "clear" if not rows else "replace", old, rows
    )


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
    ctx.conn.execute(update(t).where(t.c.id.in_(sorted(set(patient_ids)))).values(lists_digest=None))


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


def _replace_patient_lists(
    ctx: _Apply, lists: list[tuple[str, Any, list[dict], str]], patient: Row, stored: dict[str, str]
) -> None:
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
        where = _STMTS[key] = (
            t.c.visit_id.is_(None) if visit_id is None else t.c.visit_id == bindparam("b_visit")
        )
    _replace_list(
        ctx,
        patient,
        t,
        "diagnoses",
        [_diagnosis_row(d) for d in items],
        where=where,
        extra={"visit_id": visit_id},
        params=None if visit_id is None else {"b_visit": visit_id},
    )


# -- visits -----------------------------------------------------------------------------------
