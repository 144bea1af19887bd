"""``interface roi link | links | revoke-link | outbox``: download links to released packets and the
e-mail outbox from a terminal (:mod:`interface.desk.roi_delivery`). Each change is audited as
``--user`` against the request's patient; e-mails go through the SMTP server of ``--mail``
(default ``mail.yaml``)."""

from __future__ import annotations

from datetime import datetime

from interface.config.mail import FILE_NAME, MailSettings, load_optional
from interface.desk import roi, roi_delivery
from interface.web.auth import record_audit

ACTIONS = ("link", "links", "revoke-link", "outbox")


def add_parsers(sub) -> None:
    lk = sub.add_parser("link", help="a new download link to a released packet (shown once)")
    lk.add_argument("packet", type=int, help="the packet's number")
    lk.add_argument("--days", type=int, help="how long it works (default: delivery.link_days)")
    lk.add_argument("--email", action="store_true", help="e-mail it to the requester instead of printing it")
    ls = sub.add_parser("links", help="a request's download links and e-mails")
    ls.add_argument("id", type=int)
    rv = sub.add_parser("revoke-link", help="withdraw a download link")
    rv.add_argument("link", type=int)
    rv.add_argument("--reason", required=True)
    ob = sub.add_parser("outbox", help="the e-mails to recipients; --send tries those due now")
    ob.add_argument("--status", help="comma-separated: pending, sending, sent, failed, cancelled")
    ob.add_argument("--send", action="store_true", help="send the e-mails due now (pending, failed)")
    ob.add_argument(
        "--retry", type=int, action="append", default=[], help="send this e-mail now (repeatable)"
    )


def mail_of(args) -> MailSettings | None:
    return load_optional(getattr(args, "mail", None) or FILE_NAME)


def _audit(conn, args, action: str, now: datetime, request_id: int, detail: dict) -> None:
    record_audit(
        conn,
        user=args.user,
        action=action,
        target_type="roi_request",
        target_id=request_id,
        detail=detail,
        now=now,
        patient=roi.get(conn, request_id)["mrn"],
        via="cli",
    )


def _email_line(e: dict) -> str:
    when = e["sent_at"] or e["next_attempt_at"]
    return (
        f"e-mail {e['id']}\trequest {e['request_id']}\tlink {e['link_id']}\t{e['to_address']}\t"
        f"{e['status_label']}\tattempts {e['attempts']}\t{when or ''}\t{e['last_error'] or ''}\n"
    )


def run(args, engine, settings, now: datetime, out) -> int:
    mail = mail_of(args)
    if args.action == "link":
        with engine.begin() as conn:
            link, token = roi_delivery.make_link(
                conn, settings, args.packet, user=args.user, now=now, days=args.days
            )
            email_id = None
            if args.email:
                req = roi.get(conn, link["request_id"])
                email_id = roi_delivery.queue_email(
                    conn, req["id"], link["id"], req["requester_email"], user=args.user, now=now
                )
            _audit(conn, args, "roi_link", now, link["request_id"], {"link": link["id"], "email": email_id})
        if email_id is not None:
            sent = roi_delivery.send_email(engine, mail, email_id, now=now, user=args.user)
            out.write(_email_line({**sent, "status_label": roi_delivery.EMAIL_STATES[sent["status"]]}))
            return 0 if sent["status"] == "sent" else 1
        base = mail.public_url if mail is not None else ""
        out.write(
            f"link {link['id']} until {link['expires_at']:%Y-%m-%d %H:%M} UTC (shown only now):\n"
            f"{roi_delivery.download_url(base, token)}\n"
        )
        return 0
    if args.action == "links":
        with engine.begin() as conn:
            rows = roi_delivery.links_view(conn, args.id, now)
            emails = roi_delivery.emails_view(conn, args.id)
            _audit(conn, args, "roi_delivery", now, args.id, {"links": len(rows)})
        for x in rows:
            out.write(
                f"link {x['id']}\tpacket {x['packet_id']}\t{x['state_label']}\tuntil {x['expires_at']:%Y-%m-%d %H:%M}\t"
                f"{x['downloads']} download(s)\t{x['revoked_reason'] or ''}\n"
            )
        for e in emails:
            out.write(_email_line(e))
        return 0
    if args.action == "revoke-link":
        with engine.begin() as conn:
            link = roi_delivery.revoke_link(conn, args.link, args.reason, user=args.user, now=now)
            _audit(conn, args, "roi_link_revoke", now, link["request_id"], {"link": args.link})
        out.write(f"link {args.link} revoked\n")
        return 0
    failed = 0
    for email_id in args.retry:
        failed += roi_delivery.send_email(engine, mail, email_id, now=now, user=args.user)["status"] != "sent"
    if args.send:
        failed += sum(e["status"] != "sent" for e in roi_delivery.send_due(engine, mail, now=now))
    statuses = [s.strip() for s in (args.status or "").split(",") if s.strip()]
    with engine.connect() as conn:
        for e in roi_delivery.emails_view(conn, statuses=statuses):
            out.write(_email_line(e))
    return 1 if failed else 0
