"""Deficiencies: the stored findings of the completeness rules, per document,
replaced when a document changes, moved with merges, listed for the worklist.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.engine import Connection

from interface.rules.completeness import parse_time


def replace_findings(
    conn: Connection, entry: dict, findings: list[dict], now: datetime, *, document_id: int | None = None
) -> None:
    """Rewrite the worklist rows of one document (in the caller's transaction). ``document_id``
    (the ``documents`` row) tells apart documents sharing a number in different namespaces."""
    from interface.store.document_schema import document_deficiencies as t

    if document_id is not None:
        conn.execute(delete(t).where(t.c.document_id == document_id))
    else:
        conn.execute(delete(t).where(t.c.document_number == entry["document_number"]))
    author = entry.get("author") or {}
    rows = [
        {
            "document_id": document_id,
            "document_number": entry["document_number"],
            "mrn": entry["mrn"],
            "visit_number": entry.get("visit_number"),
            "type": entry.get("type"),
            "author_id": author.get("id"),
            "author_family": author.get("family"),
            "rule": f["rule"],
            "message": f["message"],
            "due_at": _utc_naive(parse_time(f.get("due_at"))),
            "found_at": now,
        }
        for f in findings
    ]
    if rows:
        conn.execute(insert(t), rows)


def _utc_naive(dt: datetime | None) -> datetime | None:
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
) -> list[dict]:
    """The worklist: every finding visible at ``now``, oldest document first.

    ``author`` matches the author's id exactly or family name case-insensitively.
    """
    from interface.store.document_schema import document_deficiencies as t
    from interface.store.document_schema import documents as d

    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    q = (
        select(t, d.c.status, d.c.author, d.c.activity_at, d.c.origination_at)
        .join(d, d.c.id == t.c.document_id)
        .where(or_(t.c.due_at.is_(None), t.c.due_at <= now))
    )
    if mrn:
        q = q.where(t.c.mrn == mrn)
    if type:
        q = q.where(func.upper(t.c.type) == type.upper())
    if author:
        q = q.where(or_(t.c.author_id == author, func.lower(t.c.author_family) == author.lower()))
    q = q.order_by(t.c.mrn, t.c.document_number, t.c.id)
    out = []
    for r in conn.execute(q).mappings():
        due = parse_time(r["due_at"])
        out.append(
            {
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
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# interface deficiencies [--mrn] [--type] [--author] [--json]


def cli_main(argv: list[str], engine, now: datetime | None = None, out=None) -> int:
    """``interface deficiencies``: print the worklist (a table, or JSON with ``--json``). Exit 0."""
    parser = argparse.ArgumentParser(
        prog="interface deficiencies", description="documents the completeness rules found incomplete"
    )
    parser.add_argument("--mrn")
    parser.add_argument("--type")
    parser.add_argument("--author")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = out or sys.stdout
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
        rows = list_deficiencies(conn, mrn=mrn, type=args.type, author=args.author, now=now)
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        out.write("no deficiencies\n")
        return 0
    header = ("DOCUMENT", "MRN", "TYPE", "STATUS", "RULE", "FINDING")
    table = [header] + [
        (r["document_number"], r["mrn"], r["type"] or "", r["status"] or "", r["rule"], r["message"])
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1] + "\n")
    return 0
