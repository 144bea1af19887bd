"""Processing work items: message -> mapping -> records -> stores, one item at a time, in order.

Two phases, so that SQLite's single write lock is held only for the writes:

1. ``prepare`` (no database): decode, parse and run the mapping — pure CPU.
2. ``apply`` (inside the worker's transaction, one SAVEPOINT per item): the chart or document
   store writes the records; the item's done state commits with them.

The :class:`Worker` loop claims runnable items (``workqueue.runnable``: oldest per key), prepares
them, then applies them in one transaction, and turns each failure into its queue transition:
retry (transient), error queue (permanent, with reason and location), or hold (unknown patient).
"""

from __future__ import annotations

import logging
import random
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.engine import Engine as DBEngine
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from interface.config.channels import Channel
from interface.engine import destinations
from interface.engine.controls import NO_CONTROLS
from interface.engine.polling import polling_thread
from interface.hl7.errors import (
    UNKNOWN_KEY_IDENTIFIER,
    HL7Error,
    Hold,
    Location,
    PermanentError,
    TransientError,
)
from interface.hl7.message import decode, parse
from interface.store import fastsql, sanitize, workqueue
from interface.store.schema import messages

log = logging.getLogger("interface.engine.processing")


@dataclass
class Prepared:
    destination: Any
    records: list | None = None
    message: Any = None
    error: Exception | None = None
    pipeline: Any = None  # the Pipeline that prepared it (inline apply: the same one applies it)


class Pipeline:
    """Knows channels, mappings and stores; turns one (item, raw) into effects."""

    def __init__(
        self,
        channels: list[Channel],
        mappings: dict,
        *,
        document_settings=None,
        destinations: dict | None = None,
        identity_rules=None,
    ):
        self.channels = {c.name: c for c in channels}
        self.mappings = mappings
        self.document_settings = document_settings
        self.identity_rules = identity_rules  # rules.identity.IdentityRules; None: no identity check
        self.extra_destinations = destinations or {}  # name -> object with prepare/apply (mllp, file)
        self._gates: dict = {}  # channel -> (identity rules, channel, its identity_check.Gate)

    def destination(self, channel: str, name: str):
        ch = self.channels.get(channel)
        if ch is None:
            raise PermanentError(f"channel {channel} is no longer configured", reason="processing_error")
        d = destinations.destination_for(ch, name)  # configured ones, and ``application_ack``
        if d is not None:
            return ch, d
        raise PermanentError(f"channel {channel} has no destination {name}", reason="processing_error")

    def unapplied_event(self, ch: Channel, trigger: str) -> str | None:
        """Why no destination of ``ch`` can apply trigger event ``trigger`` (an ADT^A24 to the
        chart, an MDM^T12 to the document index), or None. Decided at receipt, so that the sender
        gets AR 201 at once instead of an AA for a message that can only wait in the error queue
        (and hold the patient's later messages behind it). Any non-store destination (mllp, file)
        takes every event; so does a mapping whose root has no table of events."""
        trigger = trigger.strip().upper()
        if not trigger or not ch.destinations:
            return None
        roots = []
        for d in ch.destinations:
            mapping = self.mappings.get(d.mapping) if d.type == "store" else None
            if mapping is None:
                return None
            events = _root_events(mapping.root)
            if events is None or trigger in events:
                return None
            roots.append(_ROOT_WORDS.get(mapping.root, mapping.root))
        return f"{' and '.join(dict.fromkeys(roots))} cannot apply event {trigger}"

    stats = None  # a store.channel_stats.Recorder (set by ops; kept across reloads)

    def finished(self, conn, item, err: Exception | None, now: datetime) -> None:
        """A store item is done or in the error queue: count it (trends), queue the
        enhanced-mode application ACK."""
        if self.stats is not None:
            self.stats.delivery(item.channel, item.destination, err is None, now, since_created(item, now))
        ch = self.channels.get(item.channel)
        if ch is not None and (ch.ack.application_ack is not None or ch.ack.same_connection):
            from interface.engine.application_acks import queue_application_ack

            queue_application_ack(conn, ch, item, err, now)

    def retry_policy(self, channel: str, name: str) -> workqueue.RetryPolicy:
        try:
            ch, d = self.destination(channel, name)
        except PermanentError:
            return workqueue.RetryPolicy()
        return workqueue.RetryPolicy.from_config(d.retry or ch.retry)

    def hold_seconds(self, channel: str) -> float:
        ch = self.channels.get(channel)
        return ch.hold_unknown_patient_seconds if ch else 86400.0

    def prepare(self, channel: str, destination: str, raw: bytes) -> Prepared:
        try:
            ch, d = self.destination(channel, destination)
            if d.type != "store":
                return Prepared(d, None, raw)
            mapping = self.mappings.get(d.mapping)
            if mapping is None:
                raise PermanentError(f"mapping {d.mapping} is not loaded", reason="processing_error")
            msg = parse(decode(raw, ch.fallback_codec).text)
            records = mapping.apply(msg, ch.mapping_params)
            return Prepared(d, records, msg)
        except (HL7Error, PermanentError) as exc:
            return Prepared(None, None, None, exc)
        except Exception as exc:  # a bug or an unforeseen input: the item waits for a clerk
            # type and code location only: the exception's text may quote patient data
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(
                "prepare failed: %s at %s:%s (channel=%s destination=%s)",
                type(exc).__name__,
                Path(frame.filename).name,
                frame.lineno,
                channel,
                destination,
            )
            return Prepared(
                None,
                None,
                None,
                PermanentError(f"unexpected {type(exc).__name__} while mapping", reason="processing_error"),
            )

    def _gate(self, channel: str):
        """The identity gate of a channel, built once (its rule is merged and validated once);
        built again if the rules or the channel were replaced."""
        from interface.store import identity_check

        ch = self.channels.get(channel)
        got = self._gates.get(channel)
        if got is not None and got[0] is self.identity_rules and got[1] is ch:
            return got[2]
        gate = identity_check.Gate(
            self.identity_rules,
            channel,
            bool(ch is not None and ch.identity is not None and ch.identity.authoritative),
        )
        self._gates[channel] = (self.identity_rules, ch, gate)
        return gate

    def apply_store(self, conn, item, prep: Prepared, now: datetime) -> list[dict]:
        """A store destination's effects in the caller's transaction: the identity check first
        (the right chart?), then the chart, schedule or document index. Returns the changes made
        (what the dry run shows)."""
        mapping = self.mappings[prep.destination.mapping]
        resolved: dict = {}  # the patient rows the identity check read, for the chart apply
        if self.identity_rules is not None:  # before anything is filed: the right chart?
            from interface.store import identity_check

            resolved = identity_check.check(
                conn,
                self._gate(item.channel),
                prep.records,
                prep.message,
                message_id=item.message_id,
                kind=mapping.root,
            )
        if mapping.root == "chart":
            from interface.store import chart_apply

            return chart_apply.apply_updates(
                conn, prep.records, message_id=item.message_id, now=now, resolved=resolved
            )
        if mapping.root == "appointment":
            from interface.store import appointments

            return appointments.apply_appointments(conn, prep.records, message_id=item.message_id, now=now)
        from interface.store import documents

        settings = self.document_settings or documents.DocumentSettings()
        return documents.apply_documents(
            conn, prep.records, prep.message, message_id=item.message_id, now=now, settings=settings
        )

    def apply(self, conn, item, prep: Prepared, now: datetime) -> None:
        if prep.error is not None:
            raise prep.error
        d = prep.destination
        if d.type == "store":
            self.apply_store(conn, item, prep, now)
            return
        handler = self.extra_destinations.get(d.type)
        if handler is None:
            raise PermanentError(f"destination type {d.type} is not available", reason="processing_error")
        handler.deliver(conn, item, d, prep.message, now)


def since_created(item, now: datetime) -> float | None:
    """Seconds from an item's creation (its message's receipt) to ``now``."""
    created = getattr(item, "created_at", None)
    if created is None:
        return None
    if isinstance(created, str):
        created = datetime.fromisoformat(created)
    if created.tzinfo is None and now.tzinfo is not None:
        created = created.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - created).total_seconds())


def unavailable(exc: SQLAlchemyError) -> bool:
    """The database itself failed (down, connection lost, locked, deadlock): the whole
    transaction is retried later. Any other database error is one item's own (see
    :meth:`Worker._apply_one`)."""
    return isinstance(exc, (OperationalError, InterfaceError)) or bool(
        getattr(exc, "connection_invalidated", False)
    )


def held_error(exc: Hold) -> HL7Error:
    """A hold whose delay has passed, as the error the queue and the ACK show: an unknown
    patient is table-0357 code 204 (unknown key identifier) at PID-3, the key that is unknown."""
    if exc.reason == "unknown_patient":
        return HL7Error(exc.text, Location("PID", 1, 3), UNKNOWN_KEY_IDENTIFIER, reason=exc.reason)
    return HL7Error(exc.text, reason=exc.reason)


def _location_text(exc: Exception) -> str | None:
    loc = getattr(exc, "location", None)
    return str(loc) if isinstance(loc, Location) and loc.segment else None


_ROOT_WORDS = {"chart": "the chart store", "document": "the document index", "appointment": "the schedule"}


def _root_events(root: str):
    """The trigger events a mapping root's store applies (None: not known here, take all)."""
    if root == "chart":
        from interface.store.chart import EVENTS as chart_events

        return chart_events
    if root == "document":
        from interface.store.documents import EVENTS as document_events

        return document_events
    if root == "appointment":
        from interface.store.appointments import EVENTS as appointment_events

        return appointment_events
    return None


class Worker:
    """Claims runnable items and applies them; safe to run several (threads or processes)."""

    def __init__(
        self,
        db: DBEngine,
        pipeline: Pipeline,
        *,
        clock: Callable[[], datetime],
        batch: int = 64,
        rng: random.Random | None = None,
        apply_chunk: int = 16,
    ):
        self.db = db
        self.pipeline = pipeline
        self.clock = clock
        self.batch = batch
        self.apply_chunk = apply_chunk
        self.rng = rng or random.Random()
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.failed = 0
        self.controls = NO_CONTROLS  # paused destinations are skipped (interface.engine.controls)

    def _paused(self) -> frozenset[tuple[str, str]] | None:
        return self.controls.destinations or None

    # -- one round (tests call this directly) ------------------------------------------------

    def run_once(self) -> int:
        """Process what is runnable now; returns how many items were attempted."""
        now = self.clock()
        if self.db.dialect.name == "postgresql":
            return self._claim_and_apply(now)
        with self.db.connect() as conn:
            candidates = workqueue.runnable(
                conn, now, self.batch, outbound=False, exclude=self._paused()
            )  # outbound: OutboundWorker
            if not candidates:
                return 0
            raws = dict(
                conn.execute(
                    select(messages.c.id, messages.c.raw).where(
                        messages.c.id.in_([c.message_id for c in candidates])
                    )
                ).all()
            )
            conn.rollback()
        pipeline = self.pipeline  # one pipeline per round: a config reload swaps it between rounds
        prepared = {c.id: pipeline.prepare(c.channel, c.destination, raws[c.message_id]) for c in candidates}
        ids = [c.id for c in candidates]
        # Applied in short transactions: SQLite has one write lock, and the journal writer (the
        # ACKs) waits for it while a worker transaction holds it.
        step = max(1, self.apply_chunk)
        return sum(self._apply(prepared, ids[i : i + step], pipeline) for i in range(0, len(ids), step))

    def _claim_and_apply(self, now: datetime) -> int:
        """PostgreSQL: claim (FOR UPDATE SKIP LOCKED + key locks), prepare and apply in one
        transaction, so workers in several processes take different items instead of preparing
        the same ones (there is no single write lock to keep short, unlike SQLite)."""
        pipeline = self.pipeline  # one pipeline per round (config reload)
        try:
            with self.db.begin() as conn:
                # small claims, so that idle processes find heads of other keys to take
                items = workqueue.runnable(
                    conn, now, min(self.batch, 8), lock=True, outbound=False, exclude=self._paused()
                )
                if not items:
                    return 0
                raws = dict(
                    conn.execute(
                        select(messages.c.id, messages.c.raw).where(
                            messages.c.id.in_([i.message_id for i in items])
                        )
                    ).all()
                )
                prepared = {
                    i.id: pipeline.prepare(i.channel, i.destination, raws[i.message_id]) for i in items
                }
                self._apply_chunk(conn, items, prepared, now, pipeline)
                return len(items)
        except OperationalError:
            log.warning("worker transaction failed (database unavailable?); will retry")
            return 0

    def _apply(self, prepared: dict, ids: list[int], pipeline: Pipeline | None = None) -> int:
        now = self.clock()
        done = 0
        try:
            with self.db.begin() as conn:
                items = workqueue.runnable(conn, now, len(ids), lock=True, ids=ids, exclude=self._paused())
                self._apply_chunk(conn, items, prepared, now, pipeline)
                done = len(items)
        except OperationalError:
            log.warning("worker transaction failed (database unavailable?); will retry")
            return 0
        return done

    def apply_items(self, conn, item_ids: list[int], now: datetime) -> dict[int, HL7Error | None]:
        """For ``ack: on_process``: apply these items inside the caller's transaction, if each is
        the head of its keys. Returns item id -> None (applied) or the error (in error queue)."""
        items = workqueue.runnable(
            conn, now, len(item_ids), ids=item_ids, outbound=False, lock=True, exclude=self._paused()
        )
        if not items:
            return {}
        raws = dict(
            conn.execute(
                select(messages.c.id, messages.c.raw).where(messages.c.id.in_([i.message_id for i in items]))
            ).all()
        )
        out: dict[int, HL7Error | None] = {}
        pipeline = self.pipeline
        for item in items:
            prep = pipeline.prepare(item.channel, item.destination, raws[item.message_id])
            out[item.id] = self._apply_one(conn, item, prep, now, pipeline)
        return out

    process_now = apply_items  # the engine's Processor protocol

    def unapplied_event(self, ch: Channel, trigger: str) -> str | None:
        return self.pipeline.unapplied_event(ch, trigger)

    def prepare(self, channel: str, destination: str, raw: bytes) -> Prepared:
        """Parse and map, no database (the engine calls it before its transaction)."""
        pipeline = self.pipeline  # a config reload may swap it: the one that maps also applies
        prep = pipeline.prepare(channel, destination, raw)
        prep.pipeline = pipeline
        return prep

    def apply_inline(self, conn, prepared: dict[int, Prepared], now: datetime) -> list[int]:
        """For ``apply: inline``: apply those of these new items that are first in line for their
        keys (store destinations only), in the caller's transaction, as a worker round would;
        returns the ids of the items done. Failures take their usual queue transition."""
        items = workqueue.runnable(
            conn, now, len(prepared), ids=list(prepared), outbound=False, lock=True, exclude=self._paused()
        )
        if not items:
            return []
        done: list[int] = []
        pipelines = {id(p.pipeline): p.pipeline for p in prepared.values() if p.pipeline is not None}
        if len(pipelines) > 1:  # a reload between two items' mapping: each with its own
            for item in items:
                prep = prepared[item.id]
                self._apply_one(conn, item, prep, now, prep.pipeline, done)
            return done
        pipeline = next(iter(pipelines.values()), self.pipeline)
        step = max(1, self.apply_chunk)
        for i in range(0, len(items), step):
            self._apply_chunk(conn, items[i : i + step], prepared, now, pipeline, done=done)
        return done

    def apply_new(self, conn, items: list, prepared: dict[int, Prepared], now: datetime) -> None:
        """For ``apply: inline``: apply brand-new store items that the engine found first in line
        and journalled as done in this same transaction (``journal.JournalRow.applied``), with
        no queue bookkeeping left to write, under the engine's savepoint. Raises on the first
        failure — a mapping or chart error, a hold, a database error — and the engine rolls the
        savepoint back, turns the items back into ordinary new ones (``journal.demote``) and
        hands them to :meth:`apply_inline`, which finds out which one failed and why."""
        for item in items:
            prep = prepared[item.id]
            (prep.pipeline or self.pipeline).apply(conn, item, prep, now)
        for item in items:
            prep = prepared[item.id]
            (prep.pipeline or self.pipeline).finished(conn, item, None, now)  # the application ACK
        self.processed += len(items)

    def _apply_chunk(
        self,
        conn,
        items: list,
        prepared: dict,
        now: datetime,
        pipeline: Pipeline | None = None,
        done: list | None = None,
    ) -> None:
        """Apply claimed items in the caller's transaction.

        First optimistically, all under one savepoint, with their queue bookkeeping batched
        (``workqueue.mark_done_many``): two savepoint statements and ~5 bookkeeping statements per
        chunk instead of per item. If any item fails — an error, a hold, a retry — the chunk is
        rolled back to that savepoint and applied again item by item, each in its own savepoint
        (:meth:`_apply_one`), so that the failure lands on its own item and nothing else. Chart
        and document effects are database writes (document content files are content-addressed),
        so applying twice in one transaction, the first time rolled back, is safe; a chunk with
        any other kind of destination goes item by item from the start. A database error
        propagates as before.
        """
        pipeline = pipeline or self.pipeline
        if not items:
            return
        if len(items) == 1 or any(
            p.error is not None or p.destination.type != "store" for p in (prepared[i.id] for i in items)
        ):
            # (a delivery to another system is never done twice: those go one by one)
            for item in items:
                self._apply_one(conn, item, prepared[item.id], now, pipeline, done)
            return
        sp = fastsql.Savepoint(conn, "chunk")
        try:
            for item in items:
                pipeline.apply(conn, item, prepared[item.id], now)
        except SQLAlchemyError as exc:
            sp.rollback()
            if unavailable(exc):
                raise
            for item in items:  # a value refused, a constraint...: whose is it? one by one
                self._apply_one(conn, item, prepared[item.id], now, pipeline, done)
            return
        except Exception:
            sp.rollback()  # some item fails: find out which, one by one
            for item in items:
                self._apply_one(conn, item, prepared[item.id], now, pipeline, done)
            return
        workqueue.mark_done_many(conn, items, now)
        if done is not None:
            done.extend(i.id for i in items)
        for item in items:
            pipeline.finished(conn, item, None, now)  # enhanced mode: queue the application ACK
        sp.commit()
        self.processed += len(items)

    def _apply_one(
        self,
        conn,
        item,
        prep: Prepared,
        now: datetime,
        pipeline: Pipeline | None = None,
        done: list | None = None,
    ):
        pipeline = pipeline or self.pipeline
        attempts = item.attempts + 1
        sp = fastsql.Savepoint(conn)  # conn.begin_nested(), for a fraction of the CPU
        try:
            pipeline.apply(conn, item, prep, now)
        except Hold as exc:
            sp.rollback()
            deadline = item.created_at
            if deadline.tzinfo is None and now.tzinfo is not None:
                deadline = deadline.replace(tzinfo=now.tzinfo)
            if now - deadline >= timedelta(seconds=pipeline.hold_seconds(item.channel)):
                err = held_error(exc)
                workqueue.mark_error(
                    conn, item.id, item.message_id, now, attempts, exc.text, exc.reason, _location_text(err)
                )
                self.failed += 1
                pipeline.finished(conn, item, err, now)
                return err
            workqueue.mark_held(conn, item.id, now, attempts, exc.recheck_seconds, exc.text, exc.reason)
            return None
        except TransientError as exc:
            sp.rollback()
            policy = pipeline.retry_policy(item.channel, item.destination)
            if policy.exhausted(attempts):
                workqueue.mark_error(
                    conn, item.id, item.message_id, now, attempts, str(exc), exc.reason, None
                )
                self.failed += 1
                pipeline.finished(conn, item, HL7Error(str(exc), reason=exc.reason), now)
                return HL7Error(str(exc), reason=exc.reason)
            workqueue.mark_retry(
                conn, item.id, now, attempts, policy.delay(attempts, self.rng), str(exc), exc.reason
            )
            return None
        except HL7Error as exc:
            sp.rollback()
            workqueue.mark_error(
                conn, item.id, item.message_id, now, attempts, str(exc), exc.reason, _location_text(exc)
            )
            if exc.reason == "identity_mismatch":  # the two people, for the clerk's side by side
                from interface.store import identity_check

                identity_check.record(conn, item, exc, now)
            self.failed += 1
            log.info("item=%s channel=%s outcome=error reason=%s", item.id, item.channel, exc.reason)
            pipeline.finished(conn, item, exc, now)
            return exc
        except SQLAlchemyError as exc:
            sp.rollback()
            if unavailable(exc):
                raise  # the database, not this item: the whole round is retried
            # It failed alone, under its own savepoint: the failure is this item's, and never
            # again its batch's. A value refused is permanent; anything else counts as an
            # attempt under the retry policy, then goes to the error queue.
            refused = sanitize.refusal(exc)
            err = refused or TransientError(f"database error {type(exc).__name__} while applying")
            if refused is None:
                err.reason = "database_error"
            log.warning(
                "item=%s channel=%s database refused it: %s", item.id, item.channel, type(exc).__name__
            )
            return self._apply_failed(conn, item, err, now, attempts, pipeline)
        except Exception as exc:
            sp.rollback()
            log.exception("item=%s unexpected failure", item.id)
            err = PermanentError(f"unexpected {type(exc).__name__} while applying", reason="processing_error")
            workqueue.mark_error(conn, item.id, item.message_id, now, attempts, str(err), err.reason, None)
            self.failed += 1
            pipeline.finished(conn, item, err, now)
            return err
        workqueue.mark_done(conn, item.id, item.message_id, now, attempts)
        pipeline.finished(conn, item, None, now)  # enhanced mode: queue the application ACK
        sp.commit()
        self.processed += 1
        if done is not None:
            done.append(item.id)
        return None

    def _apply_failed(self, conn, item, err, now: datetime, attempts: int, pipeline: Pipeline):
        """A database error that was the item's own: permanent -> error queue; otherwise a
        retry by the policy, the error queue once it is spent."""
        if isinstance(err, TransientError):
            policy = pipeline.retry_policy(item.channel, item.destination)
            if not policy.exhausted(attempts):
                workqueue.mark_retry(
                    conn, item.id, now, attempts, policy.delay(attempts, self.rng), str(err), err.reason
                )
                return None
            err = HL7Error(str(err), reason=err.reason)
        workqueue.mark_error(
            conn, item.id, item.message_id, now, attempts, str(err), err.reason, _location_text(err)
        )
        self.failed += 1
        pipeline.finished(conn, item, err, now)
        return err

    # -- the thread --------------------------------------------------------------------------

    def start(self, idle_wait: float = 0.5) -> None:
        self._thread = polling_thread("worker", self.run_once, self._stop, self.wake, idle_wait)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
