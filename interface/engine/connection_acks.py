"""Application ACKs sent back on the sender's own connection (``ack.same_connection``).

Many enhanced-mode senders (MSH-15/MSH-16 valued, HL7 v2.5.1 2.9.3) expect the application ACK
on the connection they sent the message on, after its accept ACK, rather than at a listener of
their own. The :class:`ConnectionAckRelay` (one per engine process) does that:

1. When the accept ACK of a message that asks for an application ACK (MSH-16 AL/ER/SU) is
   written, the listener registers a *wait*: message id -> the connection (:meth:`expect`, called
   in the reactor thread just before the accept ACK is written, so that ACK always goes first).
2. Once the message is processed, ``outbound.queue_application_ack`` journals the application
   ACK (a message of its own, ``parent_id`` = the original) with one work item, destination
   ``connection_ack`` — in the same transaction as the processing, so it is never lost.
3. The relay finds the items of its waits (:meth:`run_once`, a thread) and writes each one on
   its connection in the reactor thread; the item is ``done`` once written (MSH-15 NE: nothing
   answers it). A crash between the write and that record leaves the item pending: it is sent
   again by step 4 (at least once, like every delivery).
4. If the connection is gone (closed before or while the ACK was due) the item goes to the
   channel's return address (``ack.application_ack``, destination ``application_ack``, its
   own queue and retry) when one is configured, else into the error queue with reason
   ``undeliverable`` — never silently dropped. An item no process is waiting for (its
   process died or restarted) is handled the same way once it is
   ``same_connection_timeout_seconds`` old.

The waits live in memory: under ``run --workers N`` and on several machines, the process that
holds the connection is the one that writes the ACK, whichever process applied the message (the
items are found in the database).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.engine import Engine as DBEngine

from interface.engine.destinations import APPLICATION_ACK, CONNECTION_ACK, lane_prefix, plain_key
from interface.hl7.framing import frame
from interface.store import workqueue
from interface.store.schema import messages, work_items, work_keys
from interface.store.search_text import indexed_bytes

log = logging.getLogger("interface.engine.connection_acks")

UNDELIVERABLE = (
    "the sender's connection closed before its application ACK could be sent on it, "
    "and the channel has no return address (ack.application_ack)"
)


def asks_for_application_ack(raw: bytes) -> bool:
    """MSH-16 is AL, ER or SU (read from the bytes; a batch: its first message)."""
    start = raw.find(b"MSH")
    if start < 0 or len(raw) < start + 8:
        return False
    end = len(raw)
    for sep in (b"\r", b"\n"):
        i = raw.find(sep, start)
        if 0 <= i < end:
            end = i
    parts = raw[start:end].split(raw[start + 3 : start + 4])
    return len(parts) > 15 and parts[15].strip().upper() in (b"AL", b"ER", b"SU")


class _Wait:
    __slots__ = ("proto", "since")

    def __init__(self, proto, since: float):
        self.proto, self.since = proto, since


class ConnectionAckRelay:
    """See the module docstring. ``call`` runs a function in the reactor thread
    (``reactor.callFromThread``; tests pass a direct call); ``monotonic`` is injectable."""

    def __init__(
        self,
        db: DBEngine,
        pipeline,
        *,
        clock: Callable[[], datetime],
        call: Callable | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sweep_every: float = 5.0,
    ):
        self.db = db
        self.pipeline = pipeline  # swapped by a reload, like the workers'
        self.clock = clock
        if call is None:
            from twisted.internet import reactor

            call = reactor.callFromThread
        self.call = call
        self.monotonic = monotonic
        self.sweep_every = sweep_every
        self.waits: dict[int, _Wait] = {}  # original message id -> its connection
        self.gone: dict[int, float] = {}  # original message id -> since when its connection is gone
        self.written: list[tuple[int, int, int]] = []  # (item id, message id, attempts) to mark done
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = float("-inf")
        self.sent = 0
        self.rerouted = 0
        self.undeliverable = 0

    # -- the listener's side (reactor thread) --------------------------------------------------

    def wanted(self, ch, raw: bytes) -> bool:
        """Whether a frame routed to ``ch`` will have an application ACK for its connection."""
        return ch.ack.same_connection and ch.ack.mode != "original" and asks_for_application_ack(raw)

    def expect(self, outcome, factory, peer: str):
        """Callback on the handler's Deferred: register the wait for this message (before the
        transport writes its accept ACK). Returns the outcome unchanged."""
        if outcome.message_id is not None and outcome.status in ("accepted", "processed", "error"):
            proto = next((p for p in list(factory.protocols) if p.peer == peer and not p.closed), None)
            with self.lock:
                if proto is None:
                    self.gone[outcome.message_id] = self.monotonic()
                else:
                    self.waits[outcome.message_id] = _Wait(proto, self.monotonic())
            self.wake.set()
        return outcome

    def _write(self, proto, parent: int, item: tuple[int, int, int], raw: bytes) -> None:
        """In the reactor thread: write the ACK if the connection is still there."""
        with self.lock:
            if proto.closed or proto.transport is None:
                self.gone[parent] = self.monotonic()
                self.wake.set()
                return
            proto.transport.write(frame(raw))
            self.written.append(item)
        self.wake.set()

    # -- the relay's thread ------------------------------------------------------------------

    def run_once(self) -> int:
        """Mark written ACKs done, send those whose connection waits, move the others on."""
        now_m = self.monotonic()
        with self.lock:
            written, self.written = self.written, []
            longest = self._longest_timeout()
            for mid, w in list(self.waits.items()):
                if w.proto.closed:
                    self.gone[mid] = now_m
                    del self.waits[mid]
                elif now_m - w.since > longest:  # no application ACK came (ER/SU): stop waiting
                    del self.waits[mid]
            waiting = {mid: w.proto for mid, w in self.waits.items()}
            gone = dict(self.gone)
        sweep = now_m - self._last_sweep >= self.sweep_every and self._any_channel()
        if not (written or waiting or gone or sweep):
            return 0
        now = self.clock()
        done = 0
        with self.db.begin() as conn:
            if written:
                done += self._mark_written(conn, written, now)
            parents = list(waiting) + list(gone)
            rows = self._items(conn, parents=parents) if parents else []
            for r in rows:
                if r.parent_id in waiting:
                    proto = waiting[r.parent_id]
                    with self.lock:
                        self.waits.pop(r.parent_id, None)
                    self.call(self._write, proto, r.parent_id, (r.id, r.message_id, r.attempts), r.raw)
                    done += 1
                else:
                    self._move_on(conn, r, now)
                    with self.lock:
                        self.gone.pop(r.parent_id, None)
                    done += 1
            if sweep:
                self._last_sweep = now_m
                done += self._sweep(conn, now, set(waiting))
        with self.lock:  # a connection that went away long ago with no ACK coming: forget it
            for mid, since in list(self.gone.items()):
                if now_m - since > longest:
                    del self.gone[mid]
        return done

    def _any_channel(self) -> bool:
        chans = getattr(self.pipeline, "channels", {}) or {}
        return any(c.ack.same_connection for c in chans.values())

    def _longest_timeout(self) -> float:
        """How long a wait or a gone connection is remembered: the longest channel timeout."""
        chans = getattr(self.pipeline, "channels", {}) or {}
        return max(
            (c.ack.same_connection_timeout_seconds for c in chans.values() if c.ack.same_connection),
            default=300.0,
        )

    def _items(self, conn, *, parents=None, older_than=None) -> list:
        q = (
            select(
                work_items.c.id,
                work_items.c.message_id,
                work_items.c.attempts,
                work_items.c.channel,
                work_items.c.key,
                work_items.c.created_at,
                messages.c.parent_id,
                messages.c.raw,
            )
            .join(messages, messages.c.id == work_items.c.message_id)
            .where(work_items.c.destination == CONNECTION_ACK, work_items.c.status == "pending")
        )
        if parents is not None:
            q = q.where(messages.c.parent_id.in_(parents))
        if older_than is not None:
            q = q.where(work_items.c.created_at <= older_than)
        return conn.execute(q.order_by(work_items.c.id)).all()

    def _mark_written(self, conn, written, now) -> int:
        ids = [w[0] for w in written]
        pending = set(
            conn.execute(
                select(work_items.c.id).where(work_items.c.id.in_(ids), work_items.c.status == "pending")
            ).scalars()
        )
        n = 0
        for item_id, message_id, attempts in written:
            if item_id in pending:  # not moved on by a sweep meanwhile
                workqueue.mark_done(conn, item_id, message_id, now, attempts + 1)
                n += 1
        self.sent += n
        if n:
            log.info("%d application ACK(s) sent on their connection", n)
        return n

    def _sweep(self, conn, now: datetime, waiting: set[int]) -> int:
        """Items nobody here waits for, older than the channel's timeout: their process is gone."""
        chans = getattr(self.pipeline, "channels", {}) or {}
        shortest = min(
            (c.ack.same_connection_timeout_seconds for c in chans.values() if c.ack.same_connection),
            default=300.0,
        )
        n = 0
        for r in self._items(conn, older_than=now - timedelta(seconds=shortest)):
            ch = chans.get(r.channel)
            timeout = ch.ack.same_connection_timeout_seconds if ch is not None else shortest
            created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=now.tzinfo)
            if r.parent_id in waiting or (now - created).total_seconds() < timeout:
                continue
            self._move_on(conn, r, now)
            n += 1
        return n

    def _move_on(self, conn, r, now: datetime) -> None:
        """The connection is gone: to the return address if the channel has one, else into the
        error queue as undeliverable."""
        chans = getattr(self.pipeline, "channels", {}) or {}
        ch = chans.get(r.channel)
        ret = ch.ack.application_ack if ch is not None else None
        claimed = conn.execute(
            update(work_items)
            .where(  # another process may be moving it too
                work_items.c.id == r.id,
                work_items.c.status == "pending",
                work_items.c.destination == CONNECTION_ACK,
            )
            .values(updated_at=now)
        ).rowcount
        if not claimed:
            return
        if ret is None:
            workqueue.mark_error(
                conn, r.id, r.message_id, now, r.attempts + 1, UNDELIVERABLE, "undeliverable", None
            )
            self.undeliverable += 1
            log.warning(
                "item=%s channel=%s application ACK undeliverable (connection gone, no return address)",
                r.id,
                r.channel,
            )
            return
        key = lane_prefix(r.channel, APPLICATION_ACK) + plain_key(r.key)
        raw = _with_msh15(r.raw, b"AL" if ret.expect_ack else b"NE")
        conn.execute(
            update(messages)
            .where(messages.c.id == r.message_id)
            .values(raw=raw, body_sha256=hashlib.sha256(raw).hexdigest(), search_raw=indexed_bytes(raw))
        )
        conn.execute(
            update(work_items)
            .where(work_items.c.id == r.id)
            .values(
                destination=APPLICATION_ACK,
                key=key,
                updated_at=now,
                next_attempt_at=now,
                last_error="the sender's connection was gone: sent to the return address instead",
            )
        )
        conn.execute(update(work_keys).where(work_keys.c.item_id == r.id).values(key=key))
        self.rerouted += 1
        log.info(
            "item=%s channel=%s application ACK to the return address (connection gone)", r.id, r.channel
        )

    def start(self, idle_wait: float = 0.05) -> None:
        from interface.engine.polling import polling_thread

        self._thread = polling_thread("connection acks", self.run_once, self._stop, self.wake, idle_wait)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _with_msh15(raw: bytes, value: bytes) -> bytes:
    """The message with MSH-15 set to ``value`` (the application ACK's "answer me or not")."""
    first, sep, rest = raw.partition(b"\r")
    fs = first[3:4] or b"|"
    parts = first.split(fs)
    parts += [b""] * (15 - len(parts))
    parts[14] = value  # parts[n-1] is MSH-n
    return fs.join(parts) + sep + rest
