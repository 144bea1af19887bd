"""``interface scan ...``: scanned paper from a terminal (docs/scanning.md).

* ``coversheet --mrn M [--visit V] [--type T] [--pages N] -o sheet.pdf``: a cover sheet (QR code,
  the index in words, the checksum); the chart's name and birth date are printed and encoded
  when the MRN has a chart (the identity rules compare them at filing).
* ``upload FILE...``: journal batches as the console's upload does (the running engine's scan
  worker separates and OCRs them; ``--process`` does it here, now).
* ``batches`` / ``list [--status S] [--q WORDS]`` / ``show ID``: the intake list and the queue.
* ``index ID --mrn M [--visit V] [--type T] [--date YYYY-MM-DD] [--author A] --user NAME``,
  ``rotate ID PAGE... --degrees 90``, ``delete-pages ID PAGE...``, ``split ID --at N``,
  ``merge ID OTHER``, ``delete ID``: the clerk's actions, audited under ``--user``.

``--json`` prints machine-readable output. Views of a document are audited like the console's.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from interface.rules import coversheet
from interface.store import scan_documents as sd
from interface.store import scan_edits, scan_intake
from interface.store.identity_check import chart_person
from interface.web.auth import record_audit


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interface scan")
    p.add_argument("--json", action="store_true")
    p.add_argument("--user", default="cli", help="who is acting (for the audit trail)")
    p.add_argument("--rules", default="rules/completeness.yaml")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("coversheet")
    c.add_argument("--mrn", required=True)
    c.add_argument("--visit")
    c.add_argument("--type")
    c.add_argument("--pages", type=int)
    c.add_argument("-o", "--output", required=True)
    u = sub.add_parser("upload")
    u.add_argument("files", nargs="+")
    u.add_argument("--process", action="store_true", help="separate and OCR now, in this process")
    sub.add_parser("batches")
    ls = sub.add_parser("list")
    ls.add_argument("--status")
    ls.add_argument("--q")
    s = sub.add_parser("show")
    s.add_argument("id", type=int)
    i = sub.add_parser("index")
    i.add_argument("id", type=int)
    i.add_argument("--mrn", required=True)
    i.add_argument("--visit")
    i.add_argument("--type")
    i.add_argument("--date")
    i.add_argument("--author")
    r = sub.add_parser("rotate")
    r.add_argument("id", type=int)
    r.add_argument("pages", type=int, nargs="+")
    r.add_argument("--degrees", type=int, default=90)
    d = sub.add_parser("delete-pages")
    d.add_argument("id", type=int)
    d.add_argument("pages", type=int, nargs="+")
    sp = sub.add_parser("split")
    sp.add_argument("id", type=int)
    sp.add_argument("--at", type=int, required=True)
    m = sub.add_parser("merge")
    m.add_argument("id", type=int)
    m.add_argument("other", type=int)
    dl = sub.add_parser("delete")
    dl.add_argument("id", type=int)
    return p


def _settings(eng, db_args, rules: str):
    from interface.rules.completeness import load_rules
    from interface.store.content import store_dir
    from interface.store.documents import DocumentSettings

    rules_path = Path(rules)
    return DocumentSettings(
        content_dir=store_dir(str(eng.url.render_as_string(hide_password=False)), Path(db_args.var)),
        rules=load_rules(rules_path) if rules_path.exists() else None,
    )


def cli_main(argv: list[str], eng, db_args) -> int:
    args = _parser().parse_args(argv)
    now = datetime.now(timezone.utc)
    settings = _settings(eng, db_args, args.rules)
    if args.action == "coversheet":
        from interface.store.scan_coversheet import sheet_pdf

        with eng.connect() as conn:
            person = chart_person(conn, args.mrn)
        if person is None:
            print("warning: no chart has that MRN; the sheet carries no name", file=sys.stderr)
        sheet = coversheet.CoverSheet(
            mrn=args.mrn,
            visit_number=args.visit,
            type=args.type,
            pages=args.pages,
            family=person.family if person else None,
            given=person.given if person else None,
            birth_date=person.birth_date if person else None,
        )
        Path(args.output).write_bytes(sheet_pdf(sheet))
        print(f"checksum {coversheet.with_checksum(sheet).checksum}")
        return 0
    if args.action == "upload":
        from interface.config.scan import UPLOAD

        for f in args.files:
            with eng.begin() as conn:
                row = scan_intake.receive(
                    conn,
                    settings.store(),
                    Path(f).read_bytes(),
                    channel=UPLOAD,
                    source="upload",
                    filename=Path(f).name,
                    now=now,
                    user=args.user,
                )
                record_audit(
                    conn,
                    user=args.user,
                    action="scan_upload",
                    target_type="scan_batch",
                    target_id=row["id"],
                    now=now,
                )
            print(
                f"{row['id']}\t{row['status']}\t{row['reason'] or ''}{' (already received)' if row['duplicate'] else ''}"
            )
        if args.process:
            from interface.config.scan import load_scan_channels
            from interface.engine.scan_worker import ScanWorker
            from interface.rules.identity import DEFAULT_RULES

            w = ScanWorker(
                eng,
                channels=load_scan_channels("channels/scan"),
                settings=settings,
                gate=sd.Gate(DEFAULT_RULES),
                clock=lambda: datetime.now(timezone.utc),
            )
            w.watchers = []
            print(json.dumps(w.run_once()))
        return 0
    if args.action == "batches":
        with eng.connect() as conn:
            rows = scan_intake.batches(conn)
        for b in rows:
            print(f"{b['id']}\t{b['status']}\t{b['pages'] or ''}\t{b['channel']}\t{b['reason'] or ''}")
        return 0
    if args.action == "list":
        with eng.begin() as conn:
            rows = sd.listing(conn, status=args.status, q=args.q)
            record_audit(conn, user=args.user, action="search", target_type="scan_document", now=now)
        if args.json:
            print(json.dumps([_plain(r) for r in rows], indent=1, default=str))
        for r in rows if not args.json else []:
            print(
                f"{r['id']}\t{r['status']}\t{sd.REASONS.get(r['reason'] or '', '')}\t{len(r['pages'])} page(s)\t{r['document_number'] or ''}"
            )
        return 0
    if args.action == "show":
        from interface.desk.scan_desk import suggestions

        with eng.begin() as conn:
            doc = sd.load(conn, args.id)
            if doc is None:
                print(f"no scanned document {args.id}", file=sys.stderr)
                return 1
            doc["candidates"] = suggestions(conn, doc["text"]) if doc["status"] == "queued" else []
            record_audit(
                conn,
                user=args.user,
                action="view",
                target_type="scan_document",
                target_id=args.id,
                now=now,
                patient=doc["mrn"],
            )
        print(json.dumps(_plain(doc), indent=1, default=str))
        return 0
    return _edit(args, eng, settings, now)


def _plain(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("ocr_pages",)}


def _edit(args, eng, settings, now) -> int:
    actions = {
        "index": lambda c: scan_edits.index(
            c, args.id, mrn=args.mrn, visit_number=args.visit, type=args.type, document_date=args.date,
            author=args.author, by=args.user, store=settings.store(), settings=settings, now=now,
        ),
        "rotate": lambda c: scan_edits.rotate(c, args.id, args.pages, args.degrees, now),
        "delete-pages": lambda c: scan_edits.delete_pages(c, args.id, args.pages, now),
        "split": lambda c: scan_edits.split(c, args.id, args.at, now),
        "merge": lambda c: scan_edits.merge(c, args.id, args.other, now),
        "delete": lambda c: scan_edits.delete(c, args.id, now, args.user),
    }  # fmt: skip
    try:
        with eng.begin() as conn:
            doc = actions[args.action](conn)
            record_audit(
                conn,
                user=args.user,
                action="scan_" + args.action.replace("-", "_"),
                target_type="scan_document",
                target_id=args.id,
                now=now,
                patient=doc.get("mrn"),
            )
    except scan_edits.EditError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{doc['id']}\t{doc['status']}\t{doc['document_number'] or ''}")
    return 0
