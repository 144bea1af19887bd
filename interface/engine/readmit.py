"""Resubmitting a message that was refused at receipt: through the engine's front door again.

A message rejected when it arrived (no MSH-10, a test processing id, a version or type the
channel does not take, a bad structure, a frame that broke the reader), a quarantined duplicate
and a batch whose counts disagree all wait in the error queue as one item each (destinations
``rejected``, ``quarantine``, ``batch``). They have no place in any patient's queue, so a fixed
copy cannot simply take the item's place: it is decided like a frame just received
(``Engine.admit``: header checks, type, structure, duplicate detection, one work item per
destination, batches split), on the clerk's transaction, linked to the original (``parent_id``).
If the copy would be refused again (or is only a duplicate of what is stored), nothing changes
and the clerk is told why; else the original is marked ``resubmitted`` and its item ``done``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from interface.store import audit as store_audit
from interface.store import fastsql
from interface.store.schema import messages, work_attempts, work_items

RECEIPT_DESTINATIONS = ("rejected", "quarantine", "batch")


class ReadmitError(Exception):
    """The copy would not be taken in (why, for the clerk)."""


def readmit(
    conn: Connection, item, raw: bytes, *, channels, user: str, now: datetime, reason: str | None = None
) -> int:
    """Resubmit ``raw`` for the receipt-time error item ``item`` (a ``work_items`` row).
    Returns the first new message id. Raises ReadmitError (nothing written) when it is refused."""
    from interface.engine.inbound import Engine
    from interface.engine.outcome import Inbound

    if channels is None:
        raise ReadmitError("resubmitting a message refused at receipt needs the channel configuration")
    by_name = channels if isinstance(channels, dict) else {c.name: c for c in channels}
    orig = conn.execute(select(messages).where(messages.c.id == item.message_id)).first()
    ch = by_name.get(orig.channel)
    if ch is None:
        raise ReadmitError(f"channel {orig.channel} is not configured")
    sp = fastsql.Savepoint(conn, "readmit")
    try:
        outcomes = Engine(None, clock=lambda: now).admit(
            conn, Inbound(ch, raw, "resubmit"), now, parent_id=orig.id
        )
    except BaseException:
        sp.rollback()
        raise
    taken = [o for o in outcomes if o.status in ("accepted", "processed") and o.message_id is not None]
    if not taken:
        sp.rollback()
        why = next((o.text for o in outcomes if o.text and o.status != "duplicate"), "")
        if not why and outcomes and outcomes[0].status == "duplicate":
            why = f"it is already stored as message {outcomes[0].message_id}"
        raise ReadmitError(f"the edited message would be refused again: {why or outcomes[0].status}")
    sp.commit()
    ids = [o.message_id for o in taken]
    shown = ", ".join(map(str, ids))
    conn.execute(update(work_items).where(work_items.c.id == item.id).values(status="done", updated_at=now))
    conn.execute(
        insert(work_attempts).values(
            item_id=item.id,
            at=now,
            outcome="resubmitted",
            error=f"message {orig.id} replaced by edited message(s) {shown}",
        )
    )
    conn.execute(update(messages).where(messages.c.id == orig.id).values(status="resubmitted"))
    store_audit.record(
        conn,
        user=user,
        action="resubmit",
        target_type="work_item",
        target_id=item.id,
        reason=reason,
        detail=f"original message {orig.id}, edited message(s) {shown}",
        now=now,
        patient=orig.patient_id,
    )
    return ids[0]


def receipt_channels(conn: Connection, item_id: int, channels_dir):
    """The CLI's channels for a resubmit: loaded from ``channels_dir`` only when the item is a
    receipt-time one (other resubmits need no configuration)."""
    from pathlib import Path

    from interface.config.channels import load_channels

    dest = conn.execute(select(work_items.c.destination).where(work_items.c.id == item_id)).scalar()
    if dest not in RECEIPT_DESTINATIONS:
        return None
    return load_channels(Path(channels_dir))


def frame_in_file(path) -> bytes:
    """A file's bytes as one frame: MLLP framing removed, CR/LF/CRLF made CR."""
    from pathlib import Path

    raw = Path(path).read_bytes().replace(b"\x0b", b"").replace(b"\x1c", b"")
    return raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").strip(b"\r") + b"\r"
