"""The clerk's answers to "is this the right chart?": file anyway, file to (refile to) another
chart, send back — each audited with who, when and why, in the caller's transaction.

* :func:`file_anyway` – an ``identity_mismatch`` item is filed to the chart it named after all
  (a reason is required): its finding becomes ``filed_anyway`` and the item runs again, the
  identity check letting exactly that message through to exactly that chart.
* :func:`file_to` (and :func:`refile`, the same for a mismatch) – a linked, resubmitted copy of
  the message with the chosen MRN written into PID-3 by the engine
  (:func:`interface.hl7.pid3.with_mrn`), never hand-edited; the original is kept. The copy goes
  through the identity check like any message.
* :func:`send_back` – the item is discarded with the reason "sent back to sender: ...".
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from interface.desk import errorqueue
from interface.desk.errorqueue import ActionError
from interface.store.identity_schema import identity_reviews
from interface.store.schema import messages

MISMATCH = "identity_mismatch"


def _reason(reason: str | None, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ActionError(f"a reason is required to {what}")
    return reason[:2000]


def _open_review(conn: Connection, item) -> dict | None:
    row = conn.execute(
        select(identity_reviews)
        .where(
            identity_reviews.c.item_id == item.id,
            identity_reviews.c.message_id == item.message_id,
            identity_reviews.c.status == "mismatch",
        )
        .order_by(identity_reviews.c.id.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row is not None else None


def _decide(conn: Connection, review_id: int, status: str, user: str, reason: str | None, now: datetime):
    conn.execute(
        update(identity_reviews)
        .where(identity_reviews.c.id == review_id)
        .values(status=status, decided_by=user, decided_at=now, reason=reason)
    )


def file_anyway(conn: Connection, item_id: int, *, user: str, reason: str, now: datetime) -> None:
    """File an identity-mismatch item to the chart it named, the check bypassed for it alone."""
    reason = _reason(reason, "file a mismatch anyway")
    item = errorqueue._item(conn, item_id)
    if item.status != "error" or item.reason != MISMATCH:
        raise ActionError(f"item {item_id} is not waiting on an identity mismatch")
    review = _open_review(conn, item)
    if review is None:
        raise ActionError(f"item {item_id} has no identity finding to decide on")
    _decide(conn, review["id"], "filed_anyway", user, reason, now)
    errorqueue._audit(
        conn, now, user, "file_anyway", item_id, reason=reason, detail=f"filed to chart {review['mrn']}"
    )
    errorqueue.retry_item(conn, item_id, user=user, now=now, reason=reason, detail="file anyway")


def file_to(
    conn: Connection,
    item_id: int,
    mrn: str,
    *,
    user: str,
    now: datetime,
    channels,
    reason: str | None = None,
) -> int:
    """Resubmit a copy of the item's message with ``mrn`` in PID-3 (written by the engine, in
    the message's own delimiters and character set); returns the copy's message id. The chart
    must exist; ``channels``: the loaded Channel list or a name -> Channel dict (the MRN rule)."""
    from interface.config.channels import fallback_codec_for
    from interface.hl7.errors import ParseError
    from interface.hl7.message import decode
    from interface.hl7.pid3 import with_mrn
    from interface.store.chart import resolve_mrn

    mrn = (mrn or "").strip()
    if not mrn:
        raise ActionError("an MRN is required")
    item = errorqueue._item(conn, item_id)
    if item.status not in ("error", "held"):
        raise ActionError(f"item {item_id} is {item.status}; only error or held items can be filed")
    if resolve_mrn(conn, mrn) is None:
        raise ActionError(f"there is no chart with MRN {mrn}")
    by_name = channels if isinstance(channels, dict) else {c.name: c for c in channels or []}
    ch = by_name.get(item.channel)
    if ch is None:
        raise ActionError(f"channel {item.channel} is not configured")
    raw = conn.execute(select(messages.c.raw).where(messages.c.id == item.message_id)).scalar_one()
    decoded = decode(raw, fallback_codec_for(list(by_name.values()), item.channel))
    try:
        text = with_mrn(decoded.text, mrn, ch.mrn_rule)
    except (ParseError, ValueError) as exc:
        raise ActionError(f"the MRN cannot be written into this message: {exc}") from None
    try:
        data = text.encode(decoded.charset or "utf-8")
    except (UnicodeEncodeError, LookupError):
        data = text.encode("utf-8")
    review = _open_review(conn, item)
    new_id = errorqueue.resubmit_item(
        conn, item_id, data, user=user, now=now, reason=reason, channels=list(by_name.values())
    )
    conn.execute(update(messages).where(messages.c.id == new_id).values(patient_id=mrn[:128]))
    from interface.engine.readmit import RECEIPT_DESTINATIONS

    if item.destination not in RECEIPT_DESTINATIONS:  # the same item, now in the right chart's order
        errorqueue.rekey_item(conn, item_id, errorqueue.ordering_keys(ch, item.destination, text))
    if review is not None:
        _decide(conn, review["id"], "refiled", user, reason, now)
    errorqueue._audit(
        conn,
        now,
        user,
        "file_to",
        item_id,
        reason=reason,
        detail=f"to chart {mrn}: message {item.message_id} copied as {new_id} with PID-3 rewritten",
    )
    return new_id


def refile(conn: Connection, item_id: int, mrn: str, **kw) -> int:
    """An identity-mismatch item filed to the chart it should have named (see :func:`file_to`)."""
    item = errorqueue._item(conn, item_id)
    if item.reason != MISMATCH:
        raise ActionError(f"item {item_id} is not waiting on an identity mismatch")
    return file_to(conn, item_id, mrn, **kw)


def send_back(conn: Connection, item_id: int, *, user: str, reason: str, now: datetime) -> None:
    """Not ours to file: discard the item with "sent back to sender" and the clerk's reason."""
    reason = _reason(reason, "send a message back")
    item = errorqueue._item(conn, item_id)
    review = _open_review(conn, item)
    errorqueue.discard_item(conn, item_id, user=user, reason=f"sent back to sender: {reason}", now=now)
    if review is not None:
        _decide(conn, review["id"], "sent_back", user, reason, now)
    errorqueue._audit(conn, now, user, "send_back", item_id, reason=reason)
