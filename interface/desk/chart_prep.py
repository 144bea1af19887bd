"""The chart-prep worklist: patients with an appointment in the next N days whose chart is not
ready for it.

For every appointment whose start is in ``[start, start + days]`` (``start`` defaults to now)
and whose status is one of the settings' ``statuses`` (booked, pending: cancelled, no-show,
deleted... are left out), the chart of the patient (following merges) is checked for:

* ``deficiency`` – open completeness findings (``store.deficiencies.list_deficiencies``);
* ``consent`` – no live document of a consent type (``consent_types``, TXA-2) on file;
* ``insurance`` – no insurance on file; or a plan without a policy number (IN1-36), whose
  expiration date (IN1-13) is before the appointment's date, or without a subscriber (no
  insured's name IN1-16, unless the relationship IN1-17 is ``SEL``, the patient);
* ``identity`` – an unresolved error-queue item (error or held) for the patient with one of the
  ``identity_reasons`` (``identity_mismatch``, ``unknown_patient``).

Only appointments with at least one problem are listed, soonest first. Pure reads, in the
caller's connection.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from interface.hl7.errors import REASONS
from interface.rules.chart_prep import DEFAULT_FILE, ChartPrepSettings, settings_or_default
from interface.store import appointments, deficiencies
from interface.store import audit as store_audit
from interface.store.chart import resolve_mrn
from interface.store.chart_schema import insurance, patients
from interface.store.document_schema import documents
from interface.store.schema import messages, work_items

KINDS = {
    "deficiency": "Open deficiency",
    "consent": "Missing consent",
    "insurance": "Insurance",
    "identity": "Identity not settled",
}
MAX_DAYS = 366


def _patient(conn: Connection, mrn: str) -> dict | None:
    row = conn.execute(
        select(
            patients.c.id,
            patients.c.mrn,
            patients.c.family,
            patients.c.given,
            patients.c.birth_date,
            patients.c.sex,
        ).where(patients.c.mrn == mrn)
    ).first()
    return dict(row._mapping) if row is not None else None


def _aliases(conn: Connection, mrn: str) -> list[str]:
    """This MRN and every MRN merged (through any chain) into it."""
    out, todo = [mrn], [mrn]
    while todo:
        found = conn.execute(select(patients.c.mrn).where(patients.c.merged_into.in_(todo))).scalars().all()
        todo = [m for m in found if m not in out]
        out.extend(todo)
    return out


def _deficiency_problems(conn: Connection, mrn: str, now: datetime) -> list[dict]:
    return [
        _problem("deficiency", f"{d['message']} (document {d['document_number']})")
        for d in deficiencies.list_deficiencies(conn, mrn=mrn, now=now)
    ]


def _consent_problems(conn: Connection, mrn: str, settings: ChartPrepSettings) -> list[dict]:
    types = [t.strip().upper() for t in settings.consent_types]
    live = or_(documents.c.availability.is_(None), func.upper(documents.c.availability).not_in(["CA", "OB"]))
    found = conn.execute(
        select(documents.c.id)
        .where(documents.c.mrn == mrn, func.upper(documents.c.type).in_(types), live)
        .limit(1)
    ).first()
    if found is not None:
        return []
    return [_problem("consent", f"No consent document on file (document type {' or '.join(types)})")]


def _insurance_problems(conn: Connection, patient_id: int, appointment_date: str | None) -> list[dict]:
    plans = conn.execute(
        select(insurance).where(insurance.c.patient_id == patient_id).order_by(insurance.c.seq)
    ).all()
    if not plans:
        return [_problem("insurance", "No insurance on file")]
    out = []
    for i, p in enumerate(plans, 1):
        name = p.plan or p.company or f"plan {i}"
        if not (p.member_id or "").strip():
            out.append(_problem("insurance", f"{name}: no policy number (IN1-36)"))
        exp = (p.expiration or "").strip()
        if exp and appointment_date and exp < appointment_date[: len(exp)]:
            out.append(_problem("insurance", f"{name}: expired on {exp}, before the appointment"))
        subscriber = (p.insured_family or "").strip() or (p.insured_given or "").strip()
        if not subscriber and (p.relationship or "").strip().upper() != "SEL":
            out.append(_problem("insurance", f"{name}: no subscriber (IN1-16 / IN1-17)"))
    return out


def _identity_problems(conn: Connection, mrns: list[str], settings: ChartPrepSettings) -> list[dict]:
    if not settings.identity_reasons:
        return []
    rows = conn.execute(
        select(work_items.c.id, work_items.c.reason)
        .join(messages, messages.c.id == work_items.c.message_id)
        .where(
            messages.c.patient_id.in_(mrns),
            work_items.c.status.in_(["error", "held"]),
            work_items.c.reason.in_(list(settings.identity_reasons)),
        )
        .order_by(work_items.c.id)
    ).all()
    return [
        _problem("identity", f"{REASONS.get(r.reason, r.reason.replace('_', ' '))} (error queue item {r.id})")
        for r in rows
    ]


def _problem(kind: str, text: str) -> dict:
    return {"kind": kind, "label": KINDS[kind], "text": text}


def worklist(
    conn: Connection,
    *,
    now: datetime,
    days: int | None = None,
    start: datetime | None = None,
    settings: ChartPrepSettings | None = None,
) -> dict:
    """The worklist: ``{from, to, days, appointments, items}``; each item is ``{appointment,
    patient, problems}``."""
    settings = settings or ChartPrepSettings()
    days = settings.default_days if days is None else days
    if not 0 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 0 and {MAX_DAYS}")
    begin = (start or now).astimezone(timezone.utc)
    end = begin + timedelta(days=days)
    appts = appointments.list_appointments(conn, start=begin, end=end, statuses=list(settings.statuses))
    chart_cache: dict[str, tuple[dict | None, list[dict]]] = {}
    items = []
    for a in appts:
        mrn = resolve_mrn(conn, a["mrn"]) or a["mrn"]
        if mrn not in chart_cache:
            patient = _patient(conn, mrn)
            problems = _identity_problems(conn, sorted(set(_aliases(conn, mrn) + [a["mrn"]])), settings)
            if patient is not None:
                problems = (
                    _deficiency_problems(conn, mrn, now) + _consent_problems(conn, mrn, settings) + problems
                )
            chart_cache[mrn] = (patient, problems)
        patient, problems = chart_cache[mrn]
        problems = list(problems)
        if patient is not None:
            problems += _insurance_problems(conn, patient["id"], a.get("start_at"))
        if not problems:
            continue
        order = list(KINDS)
        problems.sort(key=lambda p: order.index(p["kind"]))
        items.append(
            {
                "appointment": {
                    k: a.get(k)
                    for k in (
                        "id",
                        "filler_id",
                        "placer_id",
                        "start_at",
                        "end_at",
                        "duration",
                        "duration_units",
                        "location",
                        "provider",
                        "status",
                        "status_label",
                        "reason",
                        "type",
                    )
                },
                "patient": {
                    "mrn": mrn,
                    "known": patient is not None,
                    **{k: (patient or {}).get(k) for k in ("family", "given", "birth_date", "sex")},
                },
                "problems": problems,
            }
        )
    return {
        "from": begin.isoformat(),
        "to": end.isoformat(),
        "days": days,
        "appointments": len(appts),
        "items": items,
    }


def parse_start(value: str | None) -> datetime | None:
    """``YYYY-MM-DD`` or an ISO date-time (naive: UTC) for the window's start; ValueError if unreadable."""
    if not value:
        return None
    dt = datetime.fromisoformat(value.strip())
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


# ---------------------------------------------------------------------------------------------
# interface chart-prep [--days N] [--from DATE] [--json]


def cli_main(
    argv: list[str], engine, now: datetime | None = None, out=None, settings_file=DEFAULT_FILE
) -> int:
    """``interface chart-prep``: print the worklist (a table, or JSON with ``--json``). Exit 0;
    2 for a bad option."""
    parser = argparse.ArgumentParser(
        prog="interface chart-prep",
        description="patients with an appointment in the next N days whose chart has a problem",
    )
    parser.add_argument(
        "--days", type=int, help="the window in days (default: rules/chart_prep.yaml default_days)"
    )
    parser.add_argument("--from", dest="start", help="the window's start (YYYY-MM-DD; default: now)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    settings = settings_or_default(settings_file)
    try:
        start = parse_start(args.start)
    except ValueError:
        parser.error("--from: not a date (use YYYY-MM-DD)")
    if args.days is not None and not 0 <= args.days <= MAX_DAYS:
        parser.error(f"--days must be between 0 and {MAX_DAYS}")
    with engine.connect() as conn:
        result = worklist(
            conn, now=now or datetime.now(timezone.utc), days=args.days, start=start, settings=settings
        )
    with engine.begin() as conn:  # a command-line read: one entry per patient listed, by the OS user
        store_audit.record_listed(
            conn,
            [item["patient"]["mrn"] for item in result["items"]],
            user=store_audit.os_user(),
            now=now or datetime.now(timezone.utc),
            action="view",
            target_type="chart_prep",
            detail={"from": result["from"], "days": result["days"]},
            via="cli",
        )
    if args.json:
        json.dump(result, out, indent=2, sort_keys=True)
        out.write("\n")
        return 0
    out.write(
        f"{len(result['items'])} of {result['appointments']} appointment(s) from {result['from'][:16]} "
        f"to {result['to'][:16]} need chart preparation\n"
    )
    for item in result["items"]:
        a, p = item["appointment"], item["patient"]
        name = ", ".join(x for x in (p["family"], p["given"]) if x) or "(patient not on file)"
        out.write(
            f"\n{(a['start_at'] or '')[:16]}  {a['status_label']}  {a['location'] or ''}  "
            f"{name}  born {p['birth_date'] or '?'}  {p['sex'] or ''}  MRN {p['mrn']}\n"
        )
        for prob in item["problems"]:
            out.write(f"  - {prob['label']}: {prob['text']}\n")
    return 0
