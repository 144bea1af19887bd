"""``interface roi ...``: the release-of-information desk on the command line.

``new``, ``import FILE`` (YAML or JSON requests), ``list``, ``show ID``, ``verify ID --check C``,
``authorize ID --form FILE ...``, ``revoke ID``, ``status ID STATUS``, ``deny ID --reason``,
``extend ID --reason``, ``release ID [--document N] [--exclude-page N:PAGE:REASON] [--out FILE]``,
``packet ID --out FILE``, ``disclosures --mrn``, ``accounting --mrn [--from --to] [--pdf FILE]``,
``log-disclosure --mrn ...``; delivery: ``link PACKET [--days N] [--email]``, ``links ID``,
``revoke-link LINK --reason``, ``outbox [--status] [--send] [--retry EMAIL]``
(:mod:`interface.ops.roi_delivery_cli`). Every command is audited as ``--user`` (default: the OS user),
against the request's patient. Exit 0; 1 when the desk refuses (the reason on stderr); 2 for bad
options.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from interface.config.yamlfile import load_yaml
from interface.desk import roi, roi_delivery, roi_release
from interface.desk.roi import RoiError
from interface.hl7.errors import ConfigError
from interface.ops import roi_delivery_cli
from interface.rules import roi as rules
from interface.store import content, db
from interface.web.auth import record_audit


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interface roi", description="release of information")
    p.add_argument("--user", default=_user(), help="who is acting (default: the OS user)")
    p.add_argument("--rules", default=str(rules.DEFAULT_FILE), help="the ROI rules (rules/roi.yaml)")
    p.add_argument("--mail", default="mail.yaml", help="outgoing mail to recipients (mail.yaml)")
    sub = p.add_subparsers(dest="action", required=True)

    n = sub.add_parser("new", help="log a request")
    n.add_argument("--mrn", required=True)
    n.add_argument("--requester-type", required=True, choices=list(rules.REQUESTER_TYPES))
    n.add_argument("--requester-name", required=True)
    n.add_argument("--organization")
    n.add_argument("--address")
    n.add_argument("--email")
    n.add_argument("--phone")
    n.add_argument("--purpose", required=True, choices=list(rules.PURPOSES))
    n.add_argument("--purpose-text")
    n.add_argument("--delivery", required=True, choices=list(rules.DELIVERIES))
    n.add_argument("--received", required=True, help="the day it was received (YYYY-MM-DD)")
    n.add_argument("--state", help="the state whose rules apply (rules/roi.yaml due.states)")
    n.add_argument("--designated-record-set", action="store_true", help="the whole designated record set")
    n.add_argument("--from", dest="start")
    n.add_argument("--to", dest="end")
    n.add_argument("--encounter", action="append", default=[], help="a visit number (repeatable)")
    n.add_argument("--type", action="append", default=[], help="a document type, TXA-2 (repeatable)")
    n.add_argument("--summary-page", action="store_true", help="a chart summary page in the packet")

    i = sub.add_parser("import", help="log the requests of a YAML or JSON file (a list of requests)")
    i.add_argument("file")

    ls = sub.add_parser("list", help="the ROI queue (open requests, soonest due first)")
    ls.add_argument("--status", help="comma-separated statuses (default: the open ones)")
    ls.add_argument("--mrn")
    ls.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="one request")
    s.add_argument("id", type=int)
    s.add_argument("--json", action="store_true")

    v = sub.add_parser("verify", help="record the identity checks")
    v.add_argument("id", type=int)
    v.add_argument("--check", action="append", default=[], choices=list(rules.IDENTITY_CHECKS))

    a = sub.add_parser("authorize", help="record the authorization (the 164.508(c) checklist)")
    a.add_argument("id", type=int)
    a.add_argument("--form", help="the signed form (PDF or image)")
    a.add_argument("--checklist", help="a JSON file with the checklist fields")
    for name in roi.CHECKLIST_TEXT + ("expires_on", "signed_on"):
        a.add_argument("--" + name.replace("_", "-"), dest=name)
    for name in roi.CHECKLIST_FLAGS:
        a.add_argument("--" + name.replace("_", "-"), dest=name, action="store_true")
    a.add_argument("--category", action="append", default=[], help="a sensitive category it names")

    r = sub.add_parser("revoke", help="the patient revoked the request's authorization")
    r.add_argument("id", type=int)
    r.add_argument("--on", required=True, help="YYYY-MM-DD")
    r.add_argument("--reason", required=True)

    st = sub.add_parser("status", help="move a request: verifying, in_progress, ready, withdrawn")
    st.add_argument("id", type=int)
    st.add_argument("status", choices=[s for s in rules.STATUSES if s not in ("released", "denied")])
    st.add_argument("--note")

    d = sub.add_parser("deny", help="deny a request")
    d.add_argument("id", type=int)
    d.add_argument("--reason", required=True)
    d.add_argument("--not-reviewable", action="store_true", help="grounds not open to review (164.524(a)(2))")

    e = sub.add_parser("extend", help="extend the due date once, with the reason")
    e.add_argument("id", type=int)
    e.add_argument("--reason", required=True)

    rl = sub.add_parser("release", help="build the packet, log the disclosure, mark released")
    rl.add_argument("id", type=int)
    rl.add_argument(
        "--document", action="append", help="a document number to release (default: those allowed)"
    )
    rl.add_argument("--exclude-page", action="append", default=[], metavar="DOC:PAGE:REASON")
    rl.add_argument("--out", help="write the packet PDF here")

    pk = sub.add_parser("packet", help="download a released packet again")
    pk.add_argument("id", type=int)
    pk.add_argument("--out", required=True)

    ds = sub.add_parser("disclosures", help="the disclosure log of a patient")
    ds.add_argument("--mrn", required=True)
    ds.add_argument("--json", action="store_true")

    ac = sub.add_parser("accounting", help="accounting of disclosures (45 CFR 164.528)")
    ac.add_argument("--mrn", required=True)
    ac.add_argument("--from", dest="start")
    ac.add_argument("--to", dest="end")
    ac.add_argument("--pdf", help="write the letter here")
    ac.add_argument("--json", action="store_true")

    ld = sub.add_parser("log-disclosure", help="enter a disclosure made outside the engine")
    ld.add_argument("--mrn", required=True)
    ld.add_argument("--on", required=True, help="YYYY-MM-DD")
    ld.add_argument("--recipient", required=True)
    ld.add_argument("--recipient-type", required=True, choices=list(rules.REQUESTER_TYPES))
    ld.add_argument("--address")
    ld.add_argument("--purpose", required=True)
    ld.add_argument("--basis", required=True, choices=list(rules.BASES))
    ld.add_argument("--description", required=True)
    roi_delivery_cli.add_parsers(sub)
    return p


def _audit(conn, args, action: str, now: datetime, mrn: str | None, target_id=None, detail=None) -> None:
    record_audit(
        conn,
        user=args.user,
        action=action,
        target_type="roi_request",
        target_id=target_id,
        detail={"via": "cli", **(detail or {})},
        now=now,
        patient=mrn,
    )


def _request_values(item: dict) -> dict:
    scope = item.get("scope") or {}
    keys = (
        "mrn",
        "requester_type",
        "requester_name",
        "requester_organization",
        "requester_address",
        "requester_email",
        "requester_phone",
        "purpose",
        "purpose_text",
        "delivery",
        "received_on",
        "state",
        "summary_page",
    )
    unknown = set(item) - set(keys) - {"scope"}
    if unknown:
        raise RoiError(f"unknown key(s): {', '.join(sorted(unknown))}")
    return {**{k: item.get(k) for k in keys if k in item}, "scope": scope}


def _print_request(v: dict, out) -> None:
    out.write(
        f"Request {v['id']}  {v['status_label']}  due {v['due_on']}"
        f"{'  OVERDUE' if v['overdue'] else ''}  received {v['received_on']} ({v['age_days']} day(s) ago)\n"
        f"  Patient MRN {v['mrn']}\n"
        f"  Requester: {v['requester_name']} ({v['requester_type_label']})\n"
        f"  Asked: {v['scope_text']}; purpose {v['purpose_label']}; delivery {v['delivery_label']}\n"
        f"  Basis: {v['basis_label']}\n"
        f"  Fee: {'; '.join(v['fee_estimate']['lines'])}\n"
    )
    if v.get("identity_missing"):
        out.write("  Identity checks missing: " + "; ".join(v["identity_missing"]) + "\n")
    for p in v.get("release_problems") or []:
        out.write(f"  Blocks release: {p['text']}\n")
    for e in v.get("events") or []:
        out.write(
            f"  {e['at']:%Y-%m-%d %H:%M}  {e['user']}  {e['action']}  {e['to_status'] or ''}  {e['note'] or ''}\n"
        )
    for p in v.get("packets") or []:
        out.write(f"  Packet {p['id']}: {p['page_count']} page(s), sha256 {p['sha256']}\n")


def _checklist(args) -> dict:
    found: dict = {}
    if args.checklist:
        found = json.loads(Path(args.checklist).read_text(encoding="utf-8"))
    for name in roi.CHECKLIST_TEXT + ("expires_on", "signed_on"):
        if getattr(args, name):
            found[name] = getattr(args, name)
    for name in roi.CHECKLIST_FLAGS:
        if getattr(args, name):
            found[name] = True
    return found


def _page_exclusions(items: list[str]) -> dict:
    out: dict[str, list] = {}
    for item in items:
        doc, _, rest = item.partition(":")
        page, _, reason = rest.partition(":")
        if not doc or not page.isdigit():
            raise RoiError(f"--exclude-page {item!r}: expected DOC:PAGE:REASON")
        out.setdefault(doc, []).append((int(page), reason))
    return out


def main(argv: list[str], cli_args, now: datetime | None = None, out=None) -> int:
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    now = now or datetime.now(timezone.utc)
    try:
        settings = rules.settings_or_default(args.rules)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    url = db.resolve_url(cli_args.db, cli_args.var)
    engine = db.make_engine(url)
    db.create_schema(engine)
    store_ = content.ContentStore(content.store_dir(url, Path(cli_args.var)))
    try:
        return _run(args, engine, settings, store_, now, out)
    except RoiError as exc:
        print(f"interface roi {args.action}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, ConfigError) as exc:
        print(f"interface roi {args.action}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _run(args, engine, settings, store_, now: datetime, out) -> int:  # noqa: C901 - one branch per command
    today, user = now.date(), args.user
    act = args.action
    if act == "new":
        scope = {
            "designated_record_set": args.designated_record_set,
            "from": args.start,
            "to": args.end,
            "encounters": args.encounter,
            "document_types": args.type,
        }
        with engine.begin() as conn:
            rid = roi.new_request(
                conn,
                settings,
                mrn=args.mrn,
                requester_type=args.requester_type,
                requester_name=args.requester_name,
                requester_organization=args.organization,
                requester_address=args.address,
                requester_email=args.email,
                requester_phone=args.phone,
                scope=scope,
                purpose=args.purpose,
                purpose_text=args.purpose_text,
                delivery=args.delivery,
                received_on=args.received,
                state=args.state,
                summary_page=args.summary_page,
                user=user,
                now=now,
            )
            req = roi.get(conn, rid)
            _audit(conn, args, "roi_new", now, req["mrn"], rid)
        out.write(f"request {rid} received; due {req['due_on']}\n")
        return 0
    if act == "import":
        doc = load_yaml(args.file)
        items = doc.data if isinstance(doc.data, list) else (doc.data or {}).get("requests", [])
        with engine.begin() as conn:
            for n, item in enumerate(items):
                try:
                    rid = roi.new_request(conn, settings, **_request_values(item), user=user, now=now)
                except RoiError as exc:
                    raise RoiError(
                        f"{doc.where((n,) if isinstance(doc.data, list) else ('requests', n))}: {exc}"
                    )
                _audit(
                    conn,
                    args,
                    "roi_new",
                    now,
                    roi.get(conn, rid)["mrn"],
                    rid,
                    {"import": Path(args.file).name},
                )
                out.write(f"request {rid} received\n")
        return 0
    if act == "list":
        statuses = [s.strip() for s in args.status.split(",")] if args.status else None
        with engine.begin() as conn:
            rows = roi.queue(conn, settings, today, statuses=statuses, mrn=args.mrn)
            _audit(conn, args, "roi_list", now, args.mrn, detail={"count": len(rows)})
        if args.json:
            out.write(roi.dumps(rows) + "\n")
            return 0
        out.write(f"{len(rows)} request(s)\n")
        for v in rows:
            out.write(
                f"{v['id']}\t{v['status_label']}\tdue {v['due_on']}{' OVERDUE' if v['overdue'] else ''}\t"
                f"{v['age_days']}d\tMRN {v['mrn']}\t{v['requester_type_label']}\t{v['requester_name']}\n"
            )
        return 0
    if act in roi_delivery_cli.ACTIONS:
        return roi_delivery_cli.run(args, engine, settings, now, out)
    if act in ("show", "packet", "release") or act in (
        "verify",
        "authorize",
        "revoke",
        "status",
        "deny",
        "extend",
    ):
        return _on_request(args, engine, settings, store_, now, out)
    if act == "disclosures":
        with engine.begin() as conn:
            rows = roi.disclosure_log(conn, args.mrn)
            _audit(conn, args, "roi_disclosures", now, args.mrn, detail={"count": len(rows)})
        if args.json:
            out.write(roi.dumps(rows) + "\n")
            return 0
        for d in rows:
            out.write(
                f"{d['disclosed_on']}\t{d['recipient_name']}\t{d['basis_label']}\t{d['source']}\t{d['description']}\n"
            )
        return 0
    if act == "accounting":
        with engine.begin() as conn:
            result = roi.accounting(
                conn, settings, args.mrn, start=args.start, end=args.end, today=today, user=user, now=now
            )
            _audit(
                conn,
                args,
                "roi_accounting",
                now,
                result["mrn"],
                detail={"from": result["from"], "to": result["to"]},
            )
        if args.pdf:
            Path(args.pdf).write_bytes(roi_release.accounting_pdf(result))
        if args.json or not args.pdf:
            out.write(roi.dumps(result) + "\n")
        return 0
    if act == "log-disclosure":
        with engine.begin() as conn:
            did = roi.log_disclosure(
                conn,
                mrn=args.mrn,
                disclosed_on=args.on,
                recipient_name=args.recipient,
                recipient_type=args.recipient_type,
                recipient_address=args.address,
                purpose=args.purpose,
                basis=args.basis,
                description=args.description,
                user=user,
                now=now,
            )
            _audit(conn, args, "roi_log_disclosure", now, args.mrn, detail={"disclosure": did})
        out.write(f"disclosure {did} logged\n")
        return 0
    raise AssertionError(act)


def _on_request(args, engine, settings, store_, now: datetime, out) -> int:
    today, user, act = now.date(), args.user, args.action
    if act == "packet":
        with engine.begin() as conn:
            packet, data = roi_release.download_packet(conn, args.id, store_, user=user, now=now, via="cli")
        Path(args.out).write_bytes(data)
        out.write(f"packet {args.id}: {packet['page_count']} page(s) written to {args.out}\n")
        return 0
    with engine.begin() as conn:
        mrn = roi.get(conn, args.id)["mrn"]
        detail: dict = {}
        if act == "show":
            v = roi.view(conn, settings, args.id, today)
        elif act == "verify":
            missing = roi.verify_identity(
                conn, settings, args.id, {c: True for c in args.check}, user=user, now=now
            )
            detail = {"verified": not missing}
        elif act == "authorize":
            form = Path(args.form).read_bytes() if args.form else None
            auth = roi.authorize(
                conn,
                settings,
                args.id,
                _checklist(args),
                user=user,
                now=now,
                store_=store_,
                categories=args.category,
                form=form,
                form_name=Path(args.form).name if args.form else None,
            )
            detail = {"authorization": auth["id"], "complete": not auth["problems"]}
        elif act == "revoke":
            roi.revoke(conn, args.id, args.on, args.reason, user=user, now=now)
        elif act == "status":
            roi.set_status(conn, settings, args.id, args.status, user=user, now=now, note=args.note)
            detail = {"status": args.status}
        elif act == "deny":
            roi.deny(
                conn,
                args.id,
                args.reason,
                user=user,
                now=now,
                reviewable=False if args.not_reviewable else None,
            )
        elif act == "extend":
            detail = {"due": roi.extend(conn, settings, args.id, args.reason, user=user, now=now).isoformat()}
        elif act == "release":
            done = roi_delivery.release(
                conn,
                settings,
                args.id,
                user=user,
                now=now,
                store_=store_,
                selected=args.document,
                page_exclusions=_page_exclusions(args.exclude_page),
            )
            detail = {"packet": done["packet_id"], "sha256": done["sha256"]}
        _audit(conn, args, f"roi_{act}", now, mrn, args.id, detail)
        if act != "show":
            v = roi.view(conn, settings, args.id, today)
    if act == "show" and args.json:
        out.write(roi.dumps(v) + "\n")
        return 0
    if act == "release":
        if args.out:
            with engine.connect() as conn:
                Path(args.out).write_bytes(roi_release.packet_pdf(conn, done["packet_id"], store_)[1])
        out.write(
            f"released: packet {done['packet_id']}, {done['page_count']} page(s), sha256 {done['sha256']}\n"
        )
        mail = roi_delivery_cli.mail_of(args)
        if done.get("token"):
            url = roi_delivery.download_url(mail.public_url if mail else "", done["token"])
            out.write(f"download link {done['link_id']} (shown only now): {url}\n")
        if done.get("email_id"):
            sent = roi_delivery.send_email(engine, mail, done["email_id"], now=now, user=user)
            out.write(
                f"e-mail {done['email_id']} to the requester: {sent['status']} {sent['last_error'] or ''}\n"
            )
    _print_request(v, out)
    return 0
