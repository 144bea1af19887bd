"""``interface audit report --mrn MRN | --user NAME [--since --until] [--csv]``, ``interface
audit verify [--anchor FILE]`` and ``interface audit anchor [--file FILE]``: the patient-centric
access report, the hash chain's check (against the anchors written down outside the database)
and the anchor itself, from a terminal (interface.store.audit; docs/audit.md). Also :func:`cli_read`, the audit entry of a command-line
read of patient data (the OS user, ``via`` cli)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from interface.store import audit as store_audit


def cli_read(
    engine,
    mrns,
    *,
    action: str,
    target_type: str,
    target_id: str | int | None = None,
    detail: str | dict | None = None,
    now: datetime | None = None,
) -> None:
    """One entry per patient a command showed (one without a patient when it showed none), by the
    OS user, ``via`` cli, in its own transaction."""
    now = now or datetime.now(timezone.utc)
    with engine.begin() as conn:
        if target_id is None:
            store_audit.record_listed(
                conn,
                mrns,
                user=store_audit.os_user(),
                now=now,
                action=action,
                target_type=target_type,
                detail=detail,
                via="cli",
            )
            return
        for mrn in list(dict.fromkeys(mrns)) or [None]:
            store_audit.record(
                conn,
                user=store_audit.os_user(),
                action=action,
                target_type=target_type,
                target_id=target_id,
                detail=detail,
                patient=mrn,
                now=now,
                via="cli",
            )


def cli_items_read(engine, item_ids, *, action: str, target_id: int | None = None) -> None:
    """A command-line read of error-queue items: an entry per patient of their messages."""
    with engine.connect() as conn:
        mrns = store_audit.item_patients(conn, item_ids)
    cli_read(engine, mrns, action=action, target_type="work_item", target_id=target_id)


def _when(text: str) -> datetime:
    """A date (YYYY-MM-DD: its midnight) or an ISO date-time; naive means UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def read_anchors(path: str) -> list[dict]:
    """The anchors of a file written by ``interface audit anchor --file`` (one JSON object a line);
    ValueError ``FILE:LINE: ...`` for a line that is not one."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            a = json.loads(line)
            int(a["seq"]), str(a["hash"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{path}:{n}: not an anchor (a JSON line with seq, hash, at)") from None
        out.append(a)
    return out


def append_anchor(path: str, line: dict) -> None:
    """Append one anchor line and make it durable (the file is only ever appended to)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _verify(engine, anchor_files: list[str], out) -> int:
    try:
        anchors = [a for f in anchor_files for a in read_anchors(f)]
    except (OSError, ValueError) as exc:
        print(f"interface audit verify: {exc}", file=sys.stderr)
        return 2
    with engine.connect() as conn:
        v = store_audit.verify(conn)
        problems = store_audit.check_anchors(conn, anchors)
    if not v.ok:
        where = f"entry {v.broken_seq}" if v.broken_seq is not None else "an entry"
        print(f"BROKEN at {where} (audit id {v.broken_id}): {v.problem}", file=sys.stderr)
        print(f"checked {v.checked} entries before it; head seq {v.seq}", file=out)
    for p in problems:
        print(f"BROKEN against an anchor: {p}", file=sys.stderr)
    if not v.ok or problems:
        return 1
    print(
        f"ok: {v.checked} entries chained; head seq {v.seq} hash {v.head_hash}; "
        f"{v.before_chain} earlier rows from before the chain"
        + (f"; {len(anchors)} anchor(s) hold" if anchor_files else ""),
        file=out,
    )
    return 0


def cli_main(argv: list[str], engine, out=None, now: datetime | None = None) -> int:
    """Exit 0; 1 when ``verify`` finds the chain broken (or an anchor not held); 2 for bad options."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="interface audit", description="the audit trail")
    sub = parser.add_subparsers(dest="action", required=True)
    r = sub.add_parser("report", help="who saw or changed a patient's data (or what a user did)")
    r.add_argument("--mrn", help="the patient (merges resolved: entries under merged MRNs included)")
    r.add_argument("--user", help="entries by this user (with --mrn: both)")
    r.add_argument("--since", type=_when, help="from this date or date-time (UTC unless said)")
    r.add_argument("--until", type=_when, help="before this date or date-time")
    r.add_argument("--limit", type=int, default=10000)
    r.add_argument("--csv", action="store_true", help="CSV (one line per entry) instead of a table")
    r.add_argument("--json", action="store_true")
    v = sub.add_parser("verify", help="recompute the hash chain; exit 1 at the first broken entry")
    v.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="FILE",
        help="also check every anchor in FILE (from `interface audit anchor --file`; repeatable)",
    )
    an = sub.add_parser(
        "anchor", help="write down the chain's head (sequence, hash, time) outside the database"
    )
    an.add_argument("--file", help="append it to this file (else print it for the auditor to keep)")
    args = parser.parse_args(argv)
    if args.action == "verify":
        return _verify(engine, args.anchor, out)
    if args.action == "anchor":
        with engine.connect() as conn:
            line = store_audit.anchor(conn, now or datetime.now(timezone.utc))
        if args.file:
            append_anchor(args.file, line)
        print(json.dumps(line, sort_keys=True), file=out)
        return 0
    if not (args.mrn or args.user):
        parser.error("report needs --mrn or --user")
    with engine.connect() as conn:
        mrns = store_audit.patient_mrns(conn, args.mrn) if args.mrn else None
        rows = store_audit.report(
            conn, mrns=mrns, user=args.user, since=args.since, until=args.until, limit=args.limit
        )
    cli_read(
        engine,
        [args.mrn] if args.mrn else [],
        action="access_report",
        target_type="audit",
        detail={"user": args.user, "since": args.since, "until": args.until, "csv": args.csv},
    )
    if args.csv:
        out.write(store_audit.to_csv(rows))
    elif args.json:
        json.dump(rows, out, indent=1, default=str)
        out.write("\n")
    else:
        for e in rows:
            print(
                f"{e['at']:%Y-%m-%d %H:%M:%S}\t{e['user']}\t{e['via'] or '-'}\t{e['action']}\t"
                f"{e['target_type'] or ''} {e['target_id'] or ''}\t{e['patient'] or ''}\t{e['reason'] or ''}",
                file=out,
            )
        print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}", file=sys.stderr)
    return 0
