"""The clerk's error-queue actions: retry, discard, resubmit, bulk and
reprocess, each audited with who and why, in the caller's transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from interface.store import audit as store_audit
from interface.store.journal import header_columns
from interface.store.schema import messages, work_attempts, work_items, work_keys
from interface.store.workqueue import UNFINISHED


class ActionError(Exception):
    """A clerk action that cannot be done as asked (unknown item, wrong state, empty reason)."""


def _audit(conn, now, user, action, item_id, reason=None, detail=None):
    """The audit entry of an action on a work item, about the patient of its message."""
    patient = conn.execute(
        select(messages.c.patient_id)
        .select_from(work_items.join(messages, messages.c.id == work_items.c.message_id))
        .where(work_items.c.id == item_id)
    ).scalar()
    store_audit.record(
        conn,
        user=user,
        action=action,
        target_type="work_item",
        target_id=item_id,
        reason=reason,
        detail=detail,
        now=now,
        patient=patient,
    )


def _item(conn, item_id: int):
    row = conn.execute(select(work_items).where(work_items.c.id == item_id)).first()
    if row is None:
        raise ActionError(f"no work item {item_id}")
    return row


def retry_item(
    conn: Connection,
    item_id: int,
    *,
    user: str,
    now: datetime,
    reason: str | None = None,
    detail: str | None = None,
) -> None:
    """Put an error (or held) item back in the queue now; it keeps its place for its key."""
    row = _item(conn, item_id)
    if row.status not in ("error", "held"):
        raise ActionError(f"item {item_id} is {row.status}; only error or held items can be retried")
    if row.destination == "quarantine":
        raise ActionError("a quarantined duplicate cannot be retried as is; resubmit or discard it")
    if row.destination in ("rejected", "batch"):
        raise ActionError(
            "a message refused at receipt cannot be retried as is; resubmit a corrected "
            "copy (or the same one, if the channel now takes it) or discard it"
        )
    conn.execute(
        update(work_items)
        .where(work_items.c.id == item_id)
        .values(status="pending", next_attempt_at=now, updated_at=now)
    )
    have = conn.execute(
        select(func.count()).select_from(work_keys).where(work_keys.c.item_id == item_id)
    ).scalar()
    if not have:
        conn.execute(insert(work_keys).values(item_id=item_id, key=row.key))
    conn.execute(
        update(messages)
        .where(messages.c.id == row.message_id, messages.c.status == "error")
        .values(status="accepted")
    )
    _audit(conn, now, user, "retry", item_id, reason=reason, detail=detail)


def discard_item(
    conn: Connection, item_id: int, *, user: str, reason: str, now: datetime, detail: str | None = None
) -> None:
    """Give up on an item, with a reason; its patient's later messages flow again."""
    if not reason or not reason.strip():
        raise ActionError("a reason is required to discard")
    row = _item(conn, item_id)
    if row.status in ("done", "discarded"):
        raise ActionError(f"item {item_id} is already {row.status}")
    conn.execute(delete(work_keys).where(work_keys.c.item_id == item_id))
    conn.execute(
        update(work_items).where(work_items.c.id == item_id).values(status="discarded", updated_at=now)
    )
    conn.execute(
        insert(work_attempts).values(item_id=item_id, at=now, outcome="discarded", error=reason[:4000])
    )
    rows = conn.execute(select(work_items.c.status).where(work_items.c.message_id == row.message_id)).all()
    if all(r.status in ("done", "discarded") for r in rows):
        conn.execute(
            update(messages)
            .where(messages.c.id == row.message_id)
            .values(status="discarded" if all(r.status == "discarded" for r in rows) else "processed")
        )
    _audit(conn, now, user, "discard", item_id, reason=reason, detail=detail)


def resubmit_item(
    conn: Connection,
    item_id: int,
    raw: bytes,
    *,
    user: str,
    now: datetime,
    reason: str | None = None,
    channels=None,
) -> int:
    """Fix-and-resend: store the edited copy as a new message linked to the original
    (``parent_id``) and point the failed work item at it, so it keeps its place in its patient's
    order (later messages for the patient still wait behind it). The original is kept unchanged,
    marked ``resubmitted``. Returns the new message id. An item of a message refused at receipt
    (rejected, quarantined, a batch's count) has no place to keep: its copy goes through the
    engine's checks again (``interface.engine.readmit``; ``channels`` is the loaded configuration)."""
    row = _item(conn, item_id)
    if row.status not in ("error", "held"):
        raise ActionError(f"item {item_id} is {row.status}; only error or held items can be resubmitted")
    from interface.engine.readmit import RECEIPT_DESTINATIONS, ReadmitError, readmit

    if row.destination in RECEIPT_DESTINATIONS:
        try:
            return readmit(conn, row, raw, channels=channels, user=user, now=now, reason=reason)
        except ReadmitError as exc:
            raise ActionError(str(exc)) from None
    orig = conn.execute(select(messages).where(messages.c.id == row.message_id)).first()
    from interface.hl7.errors import ParseError
    from interface.hl7.message import decode, header_from_text

    try:
        header = header_from_text(decode(raw).text)
    except ParseError as exc:
        raise ActionError(f"the edited message cannot be read: {exc}") from None
    new_id = conn.execute(
        insert(messages)
        .values(
            channel=orig.channel,
            received_at=now,
            peer="resubmit",
            raw=raw,
            body_sha256=hashlib.sha256(raw).hexdigest(),
            status="accepted",
            ack=None,
            ack_code=None,
            dedup_key=None,
            **header_columns(header),
            patient_id=orig.patient_id,
            parent_id=orig.id,
        )
        .returning(messages.c.id)
    ).scalar_one()
    conn.execute(
        update(work_items)
        .where(work_items.c.id == item_id)
        .values(message_id=new_id, status="pending", next_attempt_at=now, updated_at=now, attempts=0)
    )
    have = conn.execute(
        select(func.count()).select_from(work_keys).where(work_keys.c.item_id == item_id)
    ).scalar()
    if not have:
        conn.execute(insert(work_keys).values(item_id=item_id, key=row.key))
    conn.execute(
        insert(work_attempts).values(
            item_id=item_id,
            at=now,
            outcome="resubmitted",
            error=f"message {orig.id} replaced by edited message {new_id}",
        )
    )
    conn.execute(update(messages).where(messages.c.id == orig.id).values(status="resubmitted"))
    _audit(
        conn,
        now,
        user,
        "resubmit",
        item_id,
        reason=reason,
        detail=f"original message {orig.id}, edited message {new_id}",
    )
    return new_id


def ordering_keys(ch, destination: str, text: str) -> tuple[str, ...]:
    """The keys a message's item for ``destination`` is ordered by, as the engine gives them at
    receipt (the patient's MRN, or the channel's ``order_by``; raises ParseError)."""
    from interface.engine import destinations as dests
    from interface.engine.inbound import Engine
    from interface.hl7.message import header_from_text

    header = header_from_text(text)
    patient_keys, _ = Engine(None).ordering_keys(ch, header, text)
    dest = dests.destination_for(ch, destination)
    if dest is None:
        raise ActionError(f"channel {ch.name} has no destination {destination!r}")
    return dests.lane_keys(ch.name, dest, dests.base_keys(ch, patient_keys, header))


def rekey_item(conn: Connection, item_id: int, keys: tuple[str, ...]) -> None:
    """Move an unfinished item to other ordering keys (a message filed to another chart joins
    that patient's order, at its original place, and leaves the wrong patient's)."""
    keys = tuple(dict.fromkeys(keys))
    conn.execute(delete(work_keys).where(work_keys.c.item_id == item_id))
    conn.execute(insert(work_keys), [{"item_id": item_id, "key": k} for k in keys])
    conn.execute(update(work_items).where(work_items.c.id == item_id).values(key=keys[0]))


# ---------------------------------------------------------------------------------------------
# bulk clerk actions and reprocessing

BULK_MAX = 1000


@dataclass
class BulkResult:
    action: str
    succeeded: list[int]
    failed: list[tuple[int, str]]  # (item id, why it could not take the action)
    truncated: bool = False  # a filter matched more than the cap: run it again for the rest


def filter_items(
    q,
    *,
    status=None,
    channel: str | None = None,
    reason: str | None = None,
    destination: str | None = None,
    max_id: int | None = None,
):
    """The clerk's work-item filter on a select over ``work_items`` (shared by bulk actions,
    ``interface errors`` and the API): each given condition narrows it; blanks are ignored."""
    if status is not None:  # an empty list matches nothing, as asked
        q = q.where(work_items.c.status.in_(list(status)))
    if channel:
        q = q.where(work_items.c.channel == channel)
    if reason:
        q = q.where(work_items.c.reason == reason)
    if destination:
        q = q.where(work_items.c.destination == destination)
    if max_id is not None:
        q = q.where(work_items.c.id <= max_id)
    return q


def select_items(
    conn: Connection,
    *,
    channel: str | None = None,
    reason: str | None = None,
    destination: str | None = None,
    status: tuple[str, ...] = ("error",),
    max_id: int | None = None,
    limit: int = BULK_MAX,
) -> tuple[list[int], bool]:
    """Ids of the items a filter matches now, oldest first, at most ``limit``; and whether
    there were more. ``max_id``: only items up to the newest one the clerk saw."""
    q = filter_items(
        select(work_items.c.id),
        status=status,
        channel=channel,
        reason=reason,
        destination=destination,
        max_id=max_id,
    )
    ids = list(conn.scalars(q.order_by(work_items.c.id).limit(limit + 1)))
    return ids[:limit], len(ids) > limit


def bulk_action(
    db,
    action: str,
    *,
    user: str,
    reason: str,
    now: datetime,
    ids: list[int] | None = None,
    where: dict | None = None,
) -> BulkResult:
    """Retry or discard exactly the items named in ``ids``, or every item ``where``
    (``select_items`` arguments: channel, reason, destination, status, max_id) matches now.
    A reason is required (it is the audit's why). Each item is acted on in its own transaction
    and audited with who, when, why and the bulk it was part of; items that cannot take the
    action (unknown, already done...) are reported in ``failed`` and the others still done."""
    if action not in ("retry", "discard"):
        raise ActionError(f"unknown bulk action {action!r}")
    if (ids is None) == (where is None):
        raise ActionError("give either a list of item ids or a filter")
    if not reason or not reason.strip():
        raise ActionError(f"a reason is required to {action} in bulk")
    reason = reason.strip()
    truncated = False
    if ids is not None:
        targets = list(dict.fromkeys(int(i) for i in ids))
        detail = f"bulk {action} of {len(targets)} listed item(s)"
    else:
        with db.connect() as conn:
            targets, truncated = select_items(conn, **where)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(where.items()) if v)
        detail = f"bulk {action} of {len(targets)} item(s) matching {shown or 'all'}"
    result = BulkResult(action, [], [], truncated)
    for item_id in targets:
        try:
            with db.begin() as conn:
                if action == "retry":
                    retry_item(conn, item_id, user=user, now=now, reason=reason, detail=detail)
                else:
                    discard_item(conn, item_id, user=user, reason=reason, now=now, detail=detail)
            result.succeeded.append(item_id)
        except ActionError as exc:
            result.failed.append((item_id, str(exc)))
    return result


def reprocess_message(
    conn: Connection,
    message_id: int,
    destination: str,
    *,
    channels,
    user: str,
    now: datetime,
    reason: str | None = None,
) -> int:
    """Queue a stored message again to one destination of its channel (``channels``: the loaded
    Channel list or a name -> Channel dict). The new work item goes to the end of the message's
    key(s) in that destination's lane, like a new arrival; earlier items of the same message are
    untouched. Refused while the message still has an unfinished item for that destination.
    Returns the new work item id."""
    from interface.engine import destinations as dests
    from interface.hl7.errors import ParseError
    from interface.hl7.message import decode

    by_name = channels if isinstance(channels, dict) else {c.name: c for c in channels}
    msg = conn.execute(select(messages).where(messages.c.id == message_id)).first()
    if msg is None:
        raise ActionError(f"no message {message_id}")
    if msg.status in ("rejected", "quarantined"):
        raise ActionError(f"message {message_id} is {msg.status}; resubmit a corrected copy instead")
    ch = by_name.get(msg.channel)
    if ch is None:
        raise ActionError(f"channel {msg.channel} is not configured")
    dest = dests.destination_for(ch, destination)
    if dest is None or destination == dests.APPLICATION_ACK:
        names = ", ".join(d.name for d in ch.destinations)
        raise ActionError(f"channel {ch.name} has no destination {destination!r} (it has: {names})")
    busy = conn.execute(
        select(work_items.c.id).where(
            work_items.c.message_id == message_id,
            work_items.c.destination == destination,
            work_items.c.status.in_(UNFINISHED),
        )
    ).first()
    if busy is not None:
        raise ActionError(f"message {message_id} is already queued to {destination} (item {busy.id})")
    try:
        keys = ordering_keys(ch, destination, decode(msg.raw).text)
    except ParseError as exc:
        raise ActionError(f"message {message_id} cannot be read: {exc}") from None
    item_id = conn.execute(
        insert(work_items)
        .values(
            message_id=message_id,
            channel=ch.name,
            destination=destination,
            key=keys[0],
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        .returning(work_items.c.id)
    ).scalar_one()
    conn.execute(insert(work_keys), [{"item_id": item_id, "key": k} for k in dict.fromkeys(keys)])
    conn.execute(
        insert(work_attempts).values(
            item_id=item_id,
            at=now,
            outcome="reprocess",
            error=f"message {message_id} queued again to {destination}",
        )
    )
    store_audit.record(
        conn,
        user=user,
        action="reprocess",
        target_type="message",
        target_id=message_id,
        reason=reason,
        detail=f"destination {destination}, work item {item_id}",
        now=now,
        patient=conn.execute(select(messages.c.patient_id).where(messages.c.id == message_id)).scalar(),
    )
    return item_id
