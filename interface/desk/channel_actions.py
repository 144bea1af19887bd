"""An analyst's actions on a channel: pause and resume its intake or a destination's queue, retry
every item of a destination. Shared by the console, the API and ``interface channels``; each
action is one audit row (who, what, which channel), and a retry also audits each item retried
(:func:`interface.desk.errorqueue.retry_item`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from interface.desk import errorqueue
from interface.store import audit as store_audit
from interface.store import channel_controls
from interface.store.schema import work_items

NOT_RETRIABLE = ("quarantine", "rejected", "batch")  # refused at receipt: resubmit, not retry


def _audit(
    conn, now: datetime, user: str, action: str, channel: str, destination: str | None, **detail
) -> None:
    """One entry of the hash-chained audit trail (``store.audit.record``)."""
    reason = detail.pop("reason", None)
    store_audit.record(
        conn,
        user=user,
        action=action,
        now=now,
        target_type="channel",
        target_id=channel[:128],
        reason=reason,
        detail={"destination": destination, **detail} if destination or detail else None,
    )


def set_paused(
    db: Engine,
    channel: str,
    destination: str | None,
    paused: bool,
    *,
    user: str,
    now: datetime,
    reason: str | None = None,
) -> bool:
    """Pause (or resume) a channel's intake (``destination`` None) or a destination's queue;
    audited; False when it already was so."""
    dest = destination or channel_controls.INTAKE
    with db.begin() as conn:
        if paused:
            changed = channel_controls.pause(conn, channel, dest, user, now, reason)
        else:
            changed = channel_controls.resume(conn, channel, dest)
        if changed:
            what = "destination" if destination else "intake"
            action = f"{'pause' if paused else 'resume'}_{what}"
            _audit(conn, now, user, action, channel, destination, reason=reason)
    return changed


@dataclass
class RetryResult:
    retried: list[int] = field(default_factory=list)  # items in error put back in the queue
    rescheduled: int = 0  # items waiting for their next attempt, brought forward to now
    failed: list[tuple[int, str]] = field(default_factory=list)


def retry_destination(db: Engine, channel: str, destination: str, *, user: str, now: datetime) -> RetryResult:
    """Retry every item of a destination: those in error go back in the queue (each audited, each
    in its own transaction, as the error queue's bulk retry does), those waiting for their next
    attempt are tried now. Items refused at receipt are left to resubmit."""
    out = RetryResult()
    if destination in NOT_RETRIABLE:
        return out
    with db.connect() as conn:
        ids = list(
            conn.scalars(
                select(work_items.c.id)
                .where(
                    work_items.c.channel == channel,
                    work_items.c.destination == destination,
                    work_items.c.status == "error",
                )
                .order_by(work_items.c.id)
            )
        )
    for item_id in ids:
        try:
            with db.begin() as conn:
                errorqueue.retry_item(
                    conn, item_id, user=user, now=now, reason="retry all of the destination"
                )
            out.retried.append(item_id)
        except errorqueue.ActionError as exc:
            out.failed.append((item_id, str(exc)))
    with db.begin() as conn:
        out.rescheduled = conn.execute(
            update(work_items)
            .where(
                work_items.c.channel == channel,
                work_items.c.destination == destination,
                work_items.c.status == "pending",
                work_items.c.attempts > 0,
                work_items.c.next_attempt_at > now,
            )
            .values(next_attempt_at=now, updated_at=now)
        ).rowcount
        _audit(
            conn,
            now,
            user,
            "retry_destination",
            channel,
            destination,
            retried=len(out.retried),
            rescheduled=out.rescheduled,
            failed=len(out.failed),
        )
    return out
