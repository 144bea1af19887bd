"""Applying in the receiving transaction: the store items of ``ack: on_process`` channels
(their errors become AE) and those of ``apply: inline`` channels that are first in line
for their patient; quarantine of a changed resend.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Connection

from interface.engine import receipt
from interface.engine.outcome import (
    Outcome,
    _Prepared,
)
from interface.hl7 import ack as acks
from interface.hl7.errors import (
    APPLICATION_INTERNAL_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    HL7Error,
    Location,
)
from interface.store import fastsql, journal, workqueue

log = logging.getLogger("interface.engine.inbound")


class InlineApply:
    """Methods of :class:`interface.engine.inbound.Engine` (see there)."""

    def _first_in_line(self, conn: Connection, to_insert: list[_Prepared]) -> list[_Prepared]:
        """The ``apply: inline`` messages of the group that are journalled as applied and applied
        at once (:meth:`_apply_new`) instead of journalled as new, claimed, applied and marked
        done: one store item, mapped without error, first in line for each of its keys — no
        unfinished item holds the key (``work_keys``), no earlier message of this group has it,
        and on PostgreSQL no other transaction holds its advisory lock. Four statements per
        message fewer (the keys' insert and delete, the item's and the message's status
        updates), and the claim query per group."""
        if getattr(self.processor, "apply_new", None) is None:
            return []
        candidates: list[tuple[_Prepared, set[str]]] = []
        taken: set[str] = set()
        for p in to_insert:
            if p.row.status != "accepted":
                continue
            work = p.row.work
            keys = {k for w in work for k in w.keys}
            if (
                p.inline is not None
                and len(work) == 1
                and work[0].status == "pending"
                and keys
                and not keys & taken
                and p.inline[0].error is None
                and p.inline[0].destination.type == "store"
            ):
                candidates.append((p, keys))
            taken |= keys
        if not candidates:
            return []
        wanted = set().union(*(keys for _, keys in candidates))
        free = wanted - workqueue.busy_keys(conn, wanted)
        candidates = [(p, keys) for p, keys in candidates if keys <= free]
        if candidates:
            held = workqueue.lock_keys(conn, set().union(*(keys for _, keys in candidates)))
            candidates = [(p, keys) for p, keys in candidates if keys <= held]
        return [p for p, _ in candidates]

    def _apply_new(self, conn: Connection, first: list[_Prepared], now: datetime) -> None:
        """Apply the first-in-line messages journalled as applied, under a savepoint; if any
        fails, roll it back and turn them all back into ordinary new messages
        (``journal.demote``), which :meth:`_apply_inline` then takes."""
        items, prepared, keys = [], {}, {}
        for p in first:
            w = p.row.work[0]
            item = workqueue.NewItem(
                p.row.item_ids[0], p.outcome.message_id, p.channel.name, w.destination, w.keys[0], now
            )
            items.append(item)
            prepared[item.id] = p.inline[0]
            keys[item.id] = set(w.keys)
        workqueue.trace_new(conn, items, keys)
        sp = fastsql.Savepoint(conn, "new")
        try:
            self.processor.apply_new(conn, items, prepared, now)
        except Exception:  # an error item, a hold, a database error, or a bug: the ordinary path
            sp.rollback()  # (apply_inline) finds out which and why, and never costs the commit
            journal.demote(conn, [(p.outcome.message_id, p.row) for p in first])
            return
        sp.commit()
        for p in first:
            p.outcome.status = "processed"

    def _prepare_inline(self, prepared: list[_Prepared]) -> None:
        """``apply: inline`` (with ``ack: on_commit``): parse and map before the transaction, so
        that the write lock is held for the writes only."""
        prepare = getattr(self.processor, "prepare", None)
        if prepare is None:
            return
        for p in prepared:
            ch = p.channel
            if (
                p.row.status == "accepted"
                and ch.apply == "inline"
                and ch.ack.timing(p.header) == "on_commit"
                and not any(self.controls.destination_paused(ch.name, w.destination) for w in p.row.work)
            ):
                try:
                    p.inline = [prepare(ch.name, w.destination, p.row.raw) for w in p.row.work]
                except Exception as exc:  # left to the worker, which finds out why
                    log.error("inline prepare failed: %s", type(exc).__name__)
                    p.inline = None

    def _apply_inline(self, conn, prepared: list[_Prepared], now: datetime) -> None:
        """Apply the new items that are first in line for their patient, in this transaction,
        under a savepoint: a database error here rolls back the applying only — the messages
        stay journalled and queued for the worker, and the ACK (on_commit) is unchanged. Items
        applied are ``processed``; the others (behind an earlier message, or failed into retry,
        hold or the error queue) keep their outcome, and the worker takes it from there."""
        if not prepared:
            return
        work = {}
        for p in prepared:
            work.update(zip(p.row.item_ids, p.inline))
        sp = fastsql.Savepoint(conn, "inline")
        try:
            done = set(self.processor.apply_inline(conn, work, now))
        except Exception as exc:  # a database error, or a bug: never lose the journal commit
            # over it (type only: an exception's text may quote patient data)
            sp.rollback()
            log.warning(
                "inline apply failed (%s); %d item(s) left to the worker", type(exc).__name__, len(work)
            )
            return
        sp.commit()
        for p in prepared:
            if p.row.item_ids and all(i in done for i in p.row.item_ids):
                p.outcome.status = "processed"

    def _quarantine(self, p: _Prepared, now: datetime) -> None:
        err = HL7Error(
            f"control id {p.header.control_id} was already used for a different message",
            Location("MSH", 1, 10),
            DUPLICATE_KEY_IDENTIFIER,
            reason="duplicate_conflict",
        )
        p.row.status = "quarantined"
        p.row.dedup_key = None
        p.row.error_code = err.code
        p.row.error_text = err.text
        p.row.work = [
            journal.WorkSpec(
                "quarantine",
                (),
                status="error",
                reason="duplicate_conflict",
                error_location="MSH-10",
                last_error=err.text,
            )
        ]
        self._set_ack(p, "AR", now, errors=[acks.AckError(err.code, err.text, err.location)], text=err.text)

    def _process_now(self, conn, prepared: list[_Prepared], now: datetime) -> None:
        """``ack: on_process``: apply the new items in this transaction; errors become AE."""
        from sqlalchemy import select, update

        from interface.store.schema import messages, work_items

        if not prepared:
            return
        by_message = {p.outcome.message_id: p for p in prepared}
        rows = conn.execute(
            select(work_items.c.id, work_items.c.message_id).where(
                work_items.c.message_id.in_(list(by_message))
            )
        ).all()
        results = self.processor.process_now(conn, [r.id for r in rows], now)
        for item_id, message_id in rows:
            p = by_message[message_id]
            err = results.get(item_id)
            if item_id not in results:
                continue  # queued behind an earlier message for the same patient: ACK as stored
            if err is None:
                p.outcome.status = "processed"
                continue
            self._set_ack(
                p, "AE", now, errors=[acks.AckError(err.code, err.text, err.location)], text=err.text
            )
            p.outcome.status = "error"
            p.outcome.ack, p.outcome.ack_code, p.outcome.text = p.row.ack, p.row.ack_code, err.text
            conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(ack=p.row.ack, ack_code=p.row.ack_code)
            )

    def _failure(self, p: _Prepared, now: datetime) -> Outcome:
        err = acks.AckError(
            APPLICATION_INTERNAL_ERROR, "message could not be stored; it was not accepted, please resend"
        )
        mode = p.channel.ack.mode
        data = receipt.safe_ack(
            p.header, "AE", now, text=err.text, errors=[err], mode=mode, sender=p.channel.ack_sender
        )
        return Outcome(
            "error",
            data,
            receipt.safe_ack_code("AE", p.header, mode),
            p.header.control_id if p.header else None,
            p.header.message_type if p.header else None,
            None,
            err.text,
        )
