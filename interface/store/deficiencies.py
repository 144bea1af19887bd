"""Deficiencies: the stored findings of the completeness rules, per document, kept in step when
a document changes, moved with merges, listed for the worklist, waived by a clerk, rolled up per
responsible clinician and per service (docs/deficiencies.md).

Each finding names the clinician responsible for it (the rule's ``responsible``, with the
fallback of :func:`interface.rules.completeness.assign`) and the service of its visit (PV1-10);
its age and bucket are computed at read time from ``started_at`` with the caller's ``now``.

Waivers are rows of ``deficiency_waivers`` keyed by (document, rule), not by finding: when a
document is re-evaluated and the same rule fires again on it — still, or after having cleared —
the finding is waived again, with the original reason, who and when. A waived finding leaves the
open worklist and the roll-ups' open counts and is listed with ``status="waived"``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from interface.rules.completeness import BUCKETS, DEFAULT_BYLAWS_DAYS, age, assign, parse_time
from interface.store import audit as store_audit

STATUSES = ("open", "waived", "all")
UNASSIGNED = "unassigned"  # the clinician / service filter value for findings without one
MAX_REASON = 1000


class DeficiencyError(Exception):
    """A waive that cannot be done; ``status`` is the HTTP-ish code (400, 404, 409)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _visit(conn: Connection, entry: dict) -> dict | None:
    """The attending doctor (PV1-7) and hospital service (PV1-10) of the document's visit."""
    if not entry.get("visit_number"):
        return None
    try:
        from interface.store.chart_schema import patients as p
        from interface.store.chart_schema import visits as v
    except ImportError:  # pragma: no cover - documents-only build
        return None
    row = (
        conn.execute(
            select(v.c.attending_id, v.c.attending_family, v.c.attending_given, v.c.hospital_service)
            .select_from(v.join(p, p.c.id == v.c.patient_id))
            .where(p.c.mrn == entry["mrn"], v.c.visit_number == entry["visit_number"])
            .order_by(v.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return {
        "attending": {
            "id": row["attending_id"],
            "family": row["attending_family"],
            "given": row["attending_given"],
        },
        "service": row["hospital_service"],
    }


def replace_findings(
    conn: Connection, entry: dict, findings: list[dict], now: datetime, *, document_id: int | None = None
) -> None:
    """Bring the worklist rows of one document in line with ``findings`` (in the caller's
    transaction). A finding already there keeps its row (id and ``found_at``); vanished ones are
    deleted, new ones inserted. ``document_id`` (the ``documents`` row) tells apart documents
    sharing a number in different namespaces."""
    from interface.store.document_schema import document_deficiencies as t

    if document_id is not None:
        where = t.c.document_id == document_id
    else:
        where = t.c.document_number == entry["document_number"]
    old: dict[str, list[int]] = {}
    for r in conn.execute(select(t.c.id, t.c.rule).where(where).order_by(t.c.id)):
        old.setdefault(r.rule, []).append(r.id)
    visit = _visit(conn, entry) if findings else None
    attending = visit["attending"] if visit else None
    service = entry.get("service") or (visit["service"] if visit else None)
    author = entry.get("author") or {}
    keep: set[int] = set()
    new_rows = []
    for f in findings:
        who = assign(f.get("responsible") or "author", entry, attending) or {}
        started = parse_time(f.get("started_at"))
        values = {
            "document_id": document_id,
            "document_number": entry["document_number"],
            "mrn": entry["mrn"],
            "visit_number": entry.get("visit_number"),
            "type": entry.get("type"),
            "author_id": author.get("id"),
            "author_family": author.get("family"),
            "rule": f["rule"],
            "message": f["message"],
            "due_at": _utc(parse_time(f.get("due_at"))),
            "responsible_role": who.get("role"),
            "responsible_id": who.get("id"),
            "responsible_name": who.get("name"),
            "service": service,
            "started_at": _utc(started),
        }
        ids = [i for i in old.get(f["rule"], []) if i not in keep]
        if ids:
            keep.add(ids[0])
            conn.execute(update(t).where(t.c.id == ids[0]).values(**values))
        else:
            new_rows.append({**values, "found_at": now})
    gone = [i for ids in old.values() for i in ids if i not in keep]
    if gone:
        conn.execute(delete(t).where(t.c.id.in_(gone)))
    if new_rows:
        conn.execute(insert(t), new_rows)


def _utc(dt: datetime | None) -> datetime | None:
    # Stored as UTC; SQLite keeps no offset, so comparisons are done on UTC values only.
    return None if dt is None else dt.astimezone(timezone.utc)


def reassign(conn: Connection, from_mrn: str, to_mrn: str) -> int:
    from interface.store.document_schema import document_deficiencies as t

    return conn.execute(t.update().where(t.c.mrn == from_mrn).values(mrn=to_mrn)).rowcount


def list_deficiencies(
    conn: Connection,
    mrn: str | None = None,
    type: str | None = None,
    author: str | None = None,
    now: datetime | None = None,
    *,
    clinician: str | None = None,
    service: str | None = None,
    status: str = "open",
    bucket: str | None = None,
    delinquent: bool | None = None,
    bylaws_days: float = DEFAULT_BYLAWS_DAYS,
) -> list[dict]:
    """The worklist: every finding visible at ``now``, oldest document first.

    ``author`` matches the author's id exactly or family name case-insensitively; ``clinician``
    the responsible clinician's id or name the same way (``unassigned``: nobody named);
    ``service`` the service case-insensitively (``unassigned``: none). ``status`` is ``open``
    (not waived, the default), ``waived`` or ``all``; ``bucket`` one of
    :data:`~interface.rules.completeness.BUCKETS`; ``delinquent`` past ``bylaws_days`` or not.
    """
    from interface.store.document_schema import deficiency_waivers as w
    from interface.store.document_schema import document_deficiencies as t
    from interface.store.document_schema import documents as d

    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    if bucket is not None and bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    q = (
        select(
            t,
            d.c.status,
            d.c.author,
            d.c.activity_at,
            d.c.origination_at,
            w.c.reason.label("waiver_reason"),
            w.c.waived_by,
            w.c.waived_at,
            w.c.id.label("waiver_id"),
        )
        .select_from(
            t.join(d, d.c.id == t.c.document_id).outerjoin(
                w, and_(w.c.document_id == t.c.document_id, w.c.rule == t.c.rule)
            )
        )
        .where(or_(t.c.due_at.is_(None), t.c.due_at <= now))
    )
    if status == "open":
        q = q.where(w.c.id.is_(None))
    elif status == "waived":
        q = q.where(w.c.id.is_not(None))
    if mrn:
        q = q.where(t.c.mrn == mrn)
    if type:
        q = q.where(func.upper(t.c.type) == type.upper())
    if author:
        q = q.where(or_(t.c.author_id == author, func.lower(t.c.author_family) == author.lower()))
    if clinician:
        if clinician == UNASSIGNED:
            q = q.where(t.c.responsible_id.is_(None), t.c.responsible_name.is_(None))
        else:
            q = q.where(
                or_(t.c.responsible_id == clinician, func.lower(t.c.responsible_name) == clinician.lower())
            )
    if service:
        if service == UNASSIGNED:
            q = q.where(t.c.service.is_(None))
        else:
            q = q.where(func.lower(t.c.service) == service.lower())
    q = q.order_by(t.c.mrn, t.c.document_number, t.c.id)
    out = []
    for r in conn.execute(q).mappings():
        due = parse_time(r["due_at"])
        aged = age(r["started_at"] or r["found_at"], now, bylaws_days)
        if bucket is not None and aged["bucket"] != bucket:
            continue
        if delinquent is not None and aged["delinquent"] != delinquent:
            continue
        started = parse_time(r["started_at"] or r["found_at"])
        waived_at = parse_time(r["waived_at"])
        out.append(
            {
                "id": r["id"],
                "document_number": r["document_number"],
                "mrn": r["mrn"],
                "visit_number": r["visit_number"],
                "type": r["type"],
                "status": r["status"],
                "author": json.loads(r["author"]) if r["author"] else None,
                "activity_at": r["activity_at"],
                "origination_at": r["origination_at"],
                "rule": r["rule"],
                "message": r["message"],
                "due_at": due.isoformat() if due else None,
                "overdue_days": int((now - due).total_seconds() // 86400) if due else None,
                "responsible": (
                    {"role": r["responsible_role"], "id": r["responsible_id"], "name": r["responsible_name"]}
                    if r["responsible_id"] or r["responsible_name"]
                    else None
                ),
                "service": r["service"],
                "started_at": started.isoformat() if started else None,
                "age_days": aged["days"],
                "bucket": aged["bucket"],
                "delinquent": aged["delinquent"],
                "waived": (
                    {
                        "reason": r["waiver_reason"],
                        "by": r["waived_by"],
                        "at": waived_at.isoformat() if waived_at else None,
                    }
                    if r["waiver_id"] is not None
                    else None
                ),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# waivers


def waive(conn: Connection, deficiency_id: int, *, user: str, reason: str, now: datetime) -> dict:
    """Waive one finding (its rule on its document) with a reason; audited as ``waive_deficiency``.
    Raises :class:`DeficiencyError` (400 no reason, 404 no such finding, 409 already waived)."""
    from interface.store.document_schema import deficiency_waivers as w
    from interface.store.document_schema import document_deficiencies as t

    reason = (reason or "").strip()
    if not reason:
        raise DeficiencyError("a reason is required to waive a deficiency", 400)
    row = conn.execute(select(t).where(t.c.id == deficiency_id)).mappings().first()
    if row is None:
        raise DeficiencyError(f"no deficiency {deficiency_id}", 404)
    if row["document_id"] is None:
        raise DeficiencyError("this finding has no document row to waive it on", 409)
    exists = conn.execute(
        select(w.c.id).where(w.c.document_id == row["document_id"], w.c.rule == row["rule"])
    ).first()
    if exists is not None:
        raise DeficiencyError(f"deficiency {deficiency_id} is already waived", 409)
    conn.execute(
        insert(w).values(
            document_id=row["document_id"],
            document_number=row["document_number"],
            rule=row["rule"],
            reason=reason[:MAX_REASON],
            waived_by=user,
            waived_at=now,
        )
    )
    store_audit.record(
        conn,
        user=user,
        action="waive_deficiency",
        target_type="document",
        target_id=row["document_number"],
        reason=reason[:MAX_REASON],
        detail={"deficiency": deficiency_id, "rule": row["rule"]},
        now=now,
        patient=row["mrn"],
    )
    return {"id": deficiency_id, "document_number": row["document_number"], "rule": row["rule"]}


# ---------------------------------------------------------------------------------------------
# roll-ups


def summarize(
    conn: Connection,
    by: str,
    now: datetime | None = None,
    *,
    bylaws_days: float = DEFAULT_BYLAWS_DAYS,
    **filters,
) -> list[dict]:
    """Counts per responsible clinician (``by="clinician"``) or per service (``"service"``):
    ``{key, name, open, buckets {0-7: n, ...}, delinquent, waived}`` of the findings visible at
    ``now``; ``open``, the buckets and ``delinquent`` count open (not waived) findings only.
    Most delinquent first, then most open. ``filters`` go to :func:`list_deficiencies`."""
    if by not in ("clinician", "service"):
        raise ValueError("by must be clinician or service")
    rows = list_deficiencies(conn, now=now, status="all", bylaws_days=bylaws_days, **filters)
    groups: dict[str, dict] = {}
    for r in rows:
        if by == "clinician":
            who = r["responsible"] or {}
            key = who.get("id") or who.get("name") or UNASSIGNED
            name = who.get("name") or (None if key == UNASSIGNED else key)
        else:
            key = r["service"] or UNASSIGNED
            name = r["service"]
        g = groups.setdefault(
            key,
            {
                "key": key,
                "name": name,
                "open": 0,
                "buckets": dict.fromkeys(BUCKETS, 0),
                "delinquent": 0,
                "waived": 0,
            },
        )
        if r["waived"]:
            g["waived"] += 1
            continue
        g["open"] += 1
        g["buckets"][r["bucket"]] += 1
        g["delinquent"] += int(r["delinquent"])
    return sorted(
        groups.values(), key=lambda g: (-g["delinquent"], -g["open"], g["key"] == UNASSIGNED, g["key"])
    )


# ---------------------------------------------------------------------------------------------
# interface deficiencies [--mrn] [--type] [--author] [--clinician] [--service] [--status]
#                        [--summary clinician|service] [--rules FILE] [--json]


def _bylaws_days(args) -> float:
    if args.bylaws_days is not None:
        return args.bylaws_days
    from pathlib import Path

    from interface.rules.completeness import load_rules

    path = Path(args.rules)
    return load_rules(path).bylaws_days if path.exists() else DEFAULT_BYLAWS_DAYS


def _table(out, header: tuple, rows: list[tuple]) -> None:
    table = [header] + rows
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + str(row[-1]) + "\n")


def cli_main(argv: list[str], engine, now: datetime | None = None, out=None) -> int:
    """``interface deficiencies``: print the worklist, or with ``--summary clinician|service`` the
    counts per clinician or service by age bucket (a table, or JSON with ``--json``). Exit 0
    (2 for bad arguments)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="interface deficiencies", description="documents the completeness rules found incomplete"
    )
    parser.add_argument("--mrn")
    parser.add_argument("--type")
    parser.add_argument("--author")
    parser.add_argument("--clinician", help="responsible clinician id or name ('unassigned': none)")
    parser.add_argument("--service", help="hospital service (PV1-10; 'unassigned': none)")
    parser.add_argument("--status", choices=STATUSES, default="open", help="open (default), waived or all")
    parser.add_argument("--bucket", choices=BUCKETS)
    parser.add_argument("--delinquent", action="store_true", help="only findings past the bylaws limit")
    parser.add_argument("--summary", choices=("clinician", "service"), help="counts per clinician or service")
    parser.add_argument("--rules", default="rules/completeness.yaml", help="where bylaws_days is read")
    parser.add_argument("--bylaws-days", type=float, help="override the rules file's bylaws_days")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--waive", type=int, metavar="ID", help="waive finding ID (needs --reason)")
    parser.add_argument("--reason", help="why the finding is waived (recorded in the audit trail)")
    parser.add_argument("--user", default="cli", help="who waives (the audit trail's user)")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    if args.waive is not None:
        try:
            with engine.begin() as conn:
                waive(
                    conn,
                    args.waive,
                    user=args.user,
                    reason=args.reason or "",
                    now=now or datetime.now(timezone.utc),
                )
        except DeficiencyError as exc:
            print(f"interface deficiencies: {exc}", file=sys.stderr)
            return 1
        print(f"deficiency {args.waive} waived", file=out)
        return 0
    bylaws = _bylaws_days(args)
    with engine.connect() as conn:
        mrn = args.mrn
        if mrn:
            try:
                from interface.store.chart import (
                    resolve_mrn,  # a merged-away MRN lists the survivor's documents
                )
            except ImportError:  # pragma: no cover - documents-only build
                resolve_mrn = None
            if resolve_mrn is not None:
                mrn = resolve_mrn(conn, mrn) or mrn
        filters = dict(
            mrn=mrn, type=args.type, author=args.author, clinician=args.clinician, service=args.service
        )
        if args.summary:
            groups = summarize(conn, args.summary, now=now, bylaws_days=bylaws, **filters)
        else:
            rows = list_deficiencies(
                conn,
                now=now,
                status=args.status,
                bucket=args.bucket,
                delinquent=True if args.delinquent else None,
                bylaws_days=bylaws,
                **filters,
            )
    if not args.summary:  # a command-line read: one entry per patient listed, by the OS user
        with engine.begin() as conn:
            store_audit.record_listed(
                conn,
                [r.get("mrn") for r in rows],
                user=store_audit.os_user(),
                now=now or datetime.now(timezone.utc),
                action="search",
                target_type="document",
                detail={"deficiencies": {k: v for k, v in filters.items() if v}},
                via="cli",
            )
    if args.summary:
        if args.json:
            out.write(json.dumps(groups, indent=2) + "\n")
            return 0
        if not groups:
            out.write("no deficiencies\n")
            return 0
        header = (args.summary.upper(), "NAME", "OPEN", *[b.upper() for b in BUCKETS], "DELINQUENT", "WAIVED")
        _table(
            out,
            header,
            [
                (g["key"], g["name"] or "", g["open"], *g["buckets"].values(), g["delinquent"], g["waived"])
                for g in groups
            ],
        )
        return 0
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        out.write("no deficiencies\n")
        return 0
    header = ("DOCUMENT", "MRN", "TYPE", "STATUS", "RULE", "ID", "RESPONSIBLE", "AGE", "FINDING")
    _table(
        out,
        header,
        [
            (
                r["document_number"],
                r["mrn"],
                r["type"] or "",
                r["status"] or "",
                r["rule"],
                r["id"],
                (r["responsible"] or {}).get("name") or (r["responsible"] or {}).get("id") or UNASSIGNED,
                r["bucket"] + (" delinquent" if r["delinquent"] else "") + (" waived" if r["waived"] else ""),
                r["message"],
            )
            for r in rows
        ],
    )
    return 0
