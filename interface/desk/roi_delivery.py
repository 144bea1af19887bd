"""Delivering a released packet to its recipient: expiring download links and the e-mail outbox.

**Links.** A release whose delivery is *secure download* or *e-mail* makes a download link to its
packet (:func:`release`). A link is a random token (32 bytes, URL-safe); only its SHA-256 is
stored, so the database alone opens nothing. It works until ``expires_at``
(``delivery.link_days`` of ``rules/roi.yaml``), can be revoked by a clerk with a reason, and
opens exactly one thing: its packet, at ``/download/<token>`` (no sign-in). Every download is
an audit entry against the patient (``roi_link_download``, ``via`` download, with the
requester's IP address) and a line in the request's history. An unknown token is refused as
not found, an expired or revoked one as gone (:class:`LinkRefused`).

**E-mail.** With delivery *e-mail* the release also puts an e-mail to the requester's address in
the outbox (``roi_outbox``). :func:`send_email` sends it over SMTP (``mail.yaml``,
:mod:`interface.config.mail`) with :mod:`smtplib`: the message carries the link, its expiry and
the request's number, never the records, the patient's name or MRN. Each attempt gives the link a
fresh token (the old one stops working), so no usable token is ever stored, even in the outbox;
a failure is kept with its error and tried again after ``retry_minutes`` (at most
``max_attempts`` times, then it waits for a clerk's "Send again"). An e-mail is never dropped: it
is sent, failed (visible on the request and in the outbox), or cancelled because its link was
revoked or expired.

Functions taking ``conn`` work in the caller's transaction; :func:`send_email` and
:func:`send_due` take the engine (the SMTP conversation happens between two short transactions).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import smtplib
import ssl
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Callable, Iterable

from interface.config.mail import MailSettings
from interface.desk import roi
from interface.desk.roi import RoiError
from interface.rules import roi as rules
from interface.rules.roi import RoiSettings
from interface.store import content
from interface.store import roi as store
from interface.store import roi_delivery as links

log = logging.getLogger(__name__)

DOWNLOAD_PATH = "/download/"
LINK_STATES = {"active": "Active", "expired": "Expired", "revoked": "Revoked"}
EMAIL_STATES = {
    "pending": "Waiting to be sent",
    "sending": "Being sent",
    "sent": "Sent",
    "failed": "Not sent yet: failed",
    "cancelled": "Not sent: its link was revoked or has expired",
}
STALE_SENDING = timedelta(minutes=15)  # an e-mail left "sending" this long is tried again


class LinkRefused(RoiError):
    """A download link that opens nothing: ``kind`` not_found (unknown token) or gone
    (``why``: expired or revoked)."""

    def __init__(self, message: str, kind: str, why: str | None = None):
        super().__init__(message, kind)
        self.why = why


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def link_state(link: dict, now: datetime) -> str:
    if link["revoked_at"] is not None:
        return "revoked"
    return "expired" if _utc(now) >= _utc(link["expires_at"]) else "active"


def download_url(base: str, token: str) -> str:
    return base.rstrip("/") + DOWNLOAD_PATH + token


# -- links ------------------------------------------------------------------------------------


def make_link(
    conn, settings: RoiSettings, packet_id: int, *, user: str, now: datetime, days: int | None = None
) -> tuple[dict, str]:
    """A new download link to a released packet, working for ``days`` (default
    ``delivery.link_days``); returns (the link, its token). The token is not kept: show it once."""
    packet = store.get_packet(conn, packet_id)
    if packet is None:
        raise RoiError(f"no packet {packet_id}", "not_found")
    req = roi.get(conn, packet["request_id"], for_update=True)
    if req["status"] != "released":
        raise RoiError(f"the request is {rules.STATUSES[req['status']].lower()}", "conflict")
    days = settings.delivery.link_days if days is None else days
    if not 1 <= days <= settings.delivery.max_link_days:
        raise RoiError(f"a link works for 1 to {settings.delivery.max_link_days} days")
    token = secrets.token_urlsafe(32)
    expires = _utc(now) + timedelta(days=days)
    link_id = links.insert_link(
        conn,
        {
            "request_id": req["id"],
            "packet_id": packet_id,
            "token_sha256": token_hash(token),
            "created_by": user,
            "created_at": now,
            "expires_at": expires,
            "downloads": 0,
        },
    )
    store.add_event(
        conn,
        req["id"],
        at=now,
        user=user,
        action="link",
        note=f"download link {link_id} to packet {packet_id}, until {expires:%Y-%m-%d %H:%M} UTC",
    )
    return links.get_link(conn, link_id) or {}, token


def revoke_link(conn, link_id: int, reason: str, *, user: str, now: datetime) -> dict:
    """Withdraw a link (its e-mails not yet sent are cancelled); the reason is kept."""
    link = links.get_link(conn, link_id, for_update=True)
    if link is None:
        raise RoiError(f"no download link {link_id}", "not_found")
    why = (reason or "").strip()
    if not why:
        raise RoiError("say why the link is revoked")
    if link["revoked_at"] is not None:
        raise RoiError(f"download link {link_id} was already revoked", "conflict")
    links.update_link(conn, link_id, {"revoked_at": now, "revoked_by": user, "revoked_reason": why[:2000]})
    for e in links.emails_for(conn, link["request_id"]):
        if e["link_id"] == link_id and e["status"] in ("pending", "failed"):
            links.update_email(conn, e["id"], {"status": "cancelled", "last_error": "the link was revoked"})
    store.add_event(
        conn, link["request_id"], at=now, user=user, action="link_revoke", note=f"link {link_id}: {why}"
    )
    return links.get_link(conn, link_id) or {}


def links_view(conn, request_id: int, now: datetime) -> list[dict]:
    """The request's links with their state in words (never a token or its hash)."""
    out = []
    for link in links.links_for(conn, request_id):
        state = link_state(link, now)
        out.append(
            {
                **{k: v for k, v in link.items() if k != "token_sha256"},
                "state": state,
                "state_label": LINK_STATES[state],
            }
        )
    return out


def open_link(conn, token: str, now: datetime) -> dict:
    """The link of ``token`` if it opens its packet now (else :class:`LinkRefused`)."""
    link = links.link_by_hash(conn, token_hash(token or "")) if 20 <= len(token or "") <= 128 else None
    if link is None:
        raise LinkRefused("no such download link", "not_found")
    state = link_state(link, now)
    if state != "active":
        raise LinkRefused(
            f"the download link {'has expired' if state == 'expired' else 'was withdrawn'}", "gone", state
        )
    packet = store.get_packet(conn, link["packet_id"]) or {}
    return {**link, "page_count": packet.get("page_count"), "size": packet.get("size")}


def download(
    conn, token: str, store_: content.ContentStore, *, now: datetime, ip: str | None
) -> tuple[dict, bytes]:
    """The packet a link opens, counted on the link, written to the request's history and audited
    against the patient as a disclosure access (who: the recipient of link N; the IP address)."""
    from interface.desk import roi_release  # PDF libraries (pypdf, fpdf, Pillow: ~25 MB): not
    # in an engine process whose outbox only sends the e-mails

    link = open_link(conn, token, now)
    who = f"recipient (link {link['id']})"
    _packet, data = roi_release.download_packet(
        conn,
        link["packet_id"],
        store_,
        user=who,
        now=now,
        via="download",
        action="roi_link_download",
        detail={"link": link["id"], "ip": ip},
    )
    links.count_download(conn, link["id"], now)
    store.add_event(
        conn,
        link["request_id"],
        at=now,
        user=who,
        action="download",
        note=f"packet {link['packet_id']} downloaded through link {link['id']} from {ip or 'unknown address'}",
    )
    return link, data


# -- the release, with its delivery -----------------------------------------------------------


def release(conn, settings: RoiSettings, request_id: int, *, user: str, now: datetime, **kw) -> dict:
    """:func:`interface.desk.roi_release.release`, then the delivery: for secure download a link
    (``token`` in the answer: show it once), for e-mail a link and an e-mail in the outbox
    (``email_id``: send it after the commit, :func:`send_email`)."""
    from interface.desk import roi_release  # as in download

    done = roi_release.release(conn, settings, request_id, user=user, now=now, **kw)
    req = roi.get(conn, request_id)
    if req["delivery"] in rules.ELECTRONIC:
        link, token = make_link(conn, settings, done["packet_id"], user=user, now=now)
        done["link_id"] = link["id"]
        done["expires_at"] = link["expires_at"]
        if req["delivery"] == "email":
            done["email_id"] = queue_email(
                conn, request_id, link["id"], req["requester_email"], user=user, now=now
            )
        else:
            done["token"] = token
    return done


# -- e-mail -----------------------------------------------------------------------------------


def queue_email(conn, request_id: int, link_id: int, to: str | None, *, user: str, now: datetime) -> int:
    address = (to or "").strip()
    if "@" not in address:
        raise RoiError("delivery by e-mail needs the requester's e-mail address")
    email_id = links.insert_email(
        conn,
        {
            "request_id": request_id,
            "link_id": link_id,
            "to_address": address,
            "status": "pending",
            "attempts": 0,
            "created_by": user,
            "created_at": now,
        },
    )
    store.add_event(
        conn, request_id, at=now, user=user, action="email", note=f"e-mail {email_id} to {address} queued"
    )
    return email_id


def email_message(
    mail: MailSettings, *, to: str, url: str, expires_at: datetime, request_id: int
) -> EmailMessage:
    """The recipient's e-mail: the link, when it stops working, the request's number; nothing of
    the records themselves, nor whose records they are."""
    msg = EmailMessage()
    msg["Subject"] = f"Your records request {request_id}: ready to download"
    msg["From"] = formataddr((mail.sender_name, mail.smtp.from_))
    msg["To"] = to
    msg["Message-ID"] = make_msgid(domain=mail.smtp.from_.rsplit("@", 1)[-1])
    msg.set_content(
        "Hello,\n\n"
        f"The records you asked for (request {request_id}) are ready. Download them here:\n\n"
        f"  {url}\n\n"
        f"The link works until {_utc(expires_at):%Y-%m-%d %H:%M} UTC, for you alone: please do not "
        "forward this message. If the link has expired, or you did not ask for these records, "
        f"contact {mail.sender_name} and quote request {request_id}.\n"
    )
    return msg


def smtp_send(mail: MailSettings, msg: EmailMessage) -> None:
    """Send one message over the configured SMTP server (STARTTLS and login when configured)."""
    s = mail.smtp
    with smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds) as smtp:
        if s.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if s.username_env:
            smtp.login(os.environ.get(s.username_env, ""), os.environ.get(s.password_env or "", ""))
        smtp.send_message(msg)


Sender = Callable[[MailSettings, EmailMessage], None]


def is_due(e: dict, now: datetime, max_attempts: int, stale: timedelta = STALE_SENDING) -> bool:
    """Whether the outbox's retry sends this e-mail now (what ``store.roi_delivery.due_emails``
    selects): waiting, failed and due again with attempts left, or left sending too long."""
    if e["status"] == "pending":
        return True
    if e["status"] == "failed":
        return e["attempts"] < max_attempts and (e["next_attempt_at"] is None or e["next_attempt_at"] <= now)
    return (
        e["status"] == "sending" and e["last_attempt_at"] is not None and e["last_attempt_at"] < now - stale
    )


def send_email(
    engine,
    mail: MailSettings | None,
    email_id: int,
    *,
    now: datetime,
    user: str = "outbox",
    send: Sender = smtp_send,
    only_due: bool = False,
) -> dict:
    """Try one e-mail now (also one that failed or was sent: a clerk's "Send again"); returns it.
    ``only_due`` (the outbox's retry, the try right after a release): only when it is still due
    once locked (else it comes back marked ``skipped``), so two processes retrying the outbox
    (``interface run`` and ``interface web``) never send one e-mail twice."""
    with engine.begin() as conn:
        e = links.get_email(conn, email_id, for_update=True)
        if e is None:
            raise RoiError(f"no e-mail {email_id}", "not_found")
        if only_due and not is_due(e, now, mail.max_attempts if mail is not None else 1):
            return {**e, "skipped": True}  # another sender has it, or sent it, meanwhile
        if e["status"] == "cancelled":
            raise RoiError(f"e-mail {email_id} was cancelled: {e['last_error']}", "conflict")
        link = links.get_link(conn, e["link_id"], for_update=True) or {}
        state = link_state(link, now)
        if state != "active":
            why = f"the link has {'expired' if state == 'expired' else 'been revoked'}"
            links.update_email(conn, email_id, {"status": "cancelled", "last_error": why})
            store.add_event(
                conn,
                e["request_id"],
                at=now,
                user=user,
                action="email",
                note=f"e-mail {email_id} not sent: {why}",
            )
            return links.get_email(conn, email_id) or {}
        attempt = e["attempts"] + 1
        values: dict = {"attempts": attempt, "last_attempt_at": now}
        if mail is None:
            values.update(
                status="failed", last_error="outgoing mail is not set up (mail.yaml)", next_attempt_at=None
            )
            links.update_email(conn, email_id, values)
            return links.get_email(conn, email_id) or {}
        token = secrets.token_urlsafe(32)  # a fresh token for each attempt: none is ever stored
        links.update_link(conn, link["id"], {"token_sha256": token_hash(token)})
        links.update_email(conn, email_id, {**values, "status": "sending"})
    msg = email_message(
        mail,
        to=e["to_address"],
        url=download_url(mail.public_url, token),
        expires_at=link["expires_at"],
        request_id=e["request_id"],
    )
    error = None
    try:
        send(mail, msg)
    except (smtplib.SMTPException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        log.warning(
            "release-of-information e-mail %d not sent (attempt %d): %s",
            email_id,
            attempt,
            type(exc).__name__,
        )
    with engine.begin() as conn:
        if error is None:
            links.update_email(
                conn,
                email_id,
                {"status": "sent", "sent_at": now, "last_error": None, "next_attempt_at": None},
            )
            note = f"e-mail {email_id} with the download link sent to {e['to_address']}"
        else:
            again = now + timedelta(minutes=mail.retry_minutes) if attempt < mail.max_attempts else None
            links.update_email(
                conn, email_id, {"status": "failed", "last_error": error, "next_attempt_at": again}
            )
            note = f"e-mail {email_id} to {e['to_address']} failed (attempt {attempt}): {error}" + (
                f"; tried again after {again:%Y-%m-%d %H:%M} UTC"
                if again
                else "; waits for a clerk to send it again"
            )
        store.add_event(conn, e["request_id"], at=now, user=user, action="email", note=note)
        return links.get_email(conn, email_id) or {}


def send_due(engine, mail: MailSettings | None, *, now: datetime, send: Sender = smtp_send) -> list[dict]:
    """Send every e-mail due now (pending, failed and due again, stuck sending); the outbox's
    retry, run by the engine every minute and by ``interface roi outbox --send``."""
    if mail is None:
        return []
    with engine.connect() as conn:
        ids = links.due_emails(conn, now, mail.max_attempts, STALE_SENDING)
    out = []
    for email_id in ids:
        try:
            e = send_email(engine, mail, email_id, now=now, send=send, only_due=True)
        except RoiError:  # cancelled meanwhile
            continue
        if not e.get("skipped"):
            out.append(e)
    return out


def emails_view(conn, request_id: int | None = None, statuses: Iterable[str] | None = None) -> list[dict]:
    rows = (
        links.emails_for(conn, request_id)
        if request_id is not None
        else links.outbox(conn, list(statuses or []))
    )
    return [{**e, "status_label": EMAIL_STATES.get(e["status"], e["status"])} for e in rows]
