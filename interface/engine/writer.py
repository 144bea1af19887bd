"""Group commit: one thread owns journal writes; frames from every connection share transactions.

The reactor thread only hands frames over (``submit`` returns a Deferred) and gets outcomes back
with ``callFromThread``; it never touches the database. The writer takes whatever is waiting (up
to ``max_batch``), decides and prepares it (``Engine.prepare_group``: headers, ACKs, parsing and
mapping), commits it (``Engine.commit_group``) — one transaction, one fsync — and releases the
ACKs. Under load this turns N fsyncs into one; at one connection it adds nothing but a queue
hop. If the writer falls behind, ``pending`` grows and the transport stops reading (backpressure).

Gathering while the write lock is taken. On SQLite several writers share one write lock: the
worker, the web console, and under ``interface run --workers N`` the other processes' writers.
When the lock is not free at once, a helper thread waits for it on the writer's behalf, and the
writer meanwhile keeps taking frames from its queue and preparing them into the same group, so
the wait is spent parsing and mapping instead of idling, and the group that finally commits is
as large as what arrived. (With two engine processes each writer waited about 40% of its time
and committed groups of four or five messages; a group has a fixed cost of about 0.7 ms under
the lock — BEGIN, the duplicate check, the queue bookkeeping, COMMIT — so larger groups are
more messages per second through the one lock.) The lock is taken before ``BEGIN``, exactly as
``interface.store.db.WriteLock`` takes it for any other transaction, and given up at COMMIT.

Fault injection, for the reliability tests only (docs/reliability.md): the ``INTERFACE_FAULT``
environment variable is read here and nowhere else; it is a comma-separated list of
``kill_after_commit=CONTROL_ID`` (SIGKILL this process right after the transaction holding that
message committed, before its ACK is written: the lost-ACK window), ``commit_delay=SECONDS``
(wait before every journal transaction: a slow database), ``db_down_file=PATH`` (while PATH
exists, every statement on the engine's database fails as if the database were unreachable) and
``poison_control_id=CONTROL_ID`` (reading any message with that MSH-10 raises, as an unknown bug
would: the frame must be answered AE and kept, and the rest of its commit group ACKed as usual).
Unset in production; an unknown name fails at start-up.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import threading
import time
from typing import Callable

from twisted.internet.defer import Deferred

from interface.engine.inbound import Engine
from interface.engine.outcome import Group, Inbound, Outcome
from interface.store.db import WriteLock, write_lock_of

log = logging.getLogger("interface.engine.writer")
_STOP = object()
_WAKE = object()  # the lock waiter's answer is ready (see _LockWaiter)
FAULT_ENV = "INTERFACE_FAULT"
FAULTS = ("kill_after_commit", "commit_delay", "db_down_file", "poison_control_id")


def faults_from_env(value: str | None = None) -> dict[str, str]:
    """Parse ``INTERFACE_FAULT`` (test-only, see the module docstring)."""
    value = os.environ.get(FAULT_ENV, "") if value is None else value
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, arg = part.partition("=")
        if name not in FAULTS:
            raise ValueError(f"{FAULT_ENV}: unknown fault {name!r} (known: {', '.join(FAULTS)})")
        out[name] = arg
    return out


def _install_db_down(db, path: str) -> None:
    """Every statement fails with OperationalError while ``path`` exists (R5 on SQLite)."""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    def check(*_args, **_kw):
        if os.path.exists(path):
            raise OperationalError(
                "(fault injection)", None, ConnectionError("database unavailable (injected)")
            )

    event.listen(db, "before_cursor_execute", check)


def _install_poison(engine: Engine, control_id: str) -> None:
    """Reading a message whose MSH-10 is ``control_id`` raises (see the module docstring)."""
    real = engine._prepare_one
    needle = f"|{control_id}|"

    def prepare_one(inb, group, now, raw, text, warning):
        if needle in text.split("\r", 1)[0]:
            raise RuntimeError("injected fault: poison_control_id")
        return real(inb, group, now, raw, text, warning)

    engine._prepare_one = prepare_one


class _LockWaiter:
    """Waits for the SQLite write lock on the journal writer's behalf, in a thread of its own,
    so that the writer can go on gathering frames (module docstring). ``granted`` is set when
    the wait is over — with ``error`` None, the lock is held for the connection; else the
    exception (the lock's 60 s timeout) — and ``_WAKE`` is put into the writer's queue to wake
    it from its ``get``."""

    def __init__(self, put: Callable):
        self._put = put
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.granted = threading.Event()
        self.error: BaseException | None = None

    def request(self, lock: WriteLock, dbapi_conn) -> None:
        self.granted.clear()
        self.error = None
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="writelock-waiter", daemon=True)
            self._thread.start()
        self._requests.put((lock, dbapi_conn))

    def stop(self) -> None:
        if self._thread is not None:
            self._requests.put(None)
            self._thread = None

    def _run(self) -> None:
        while (req := self._requests.get()) is not None:
            lock, dbapi_conn = req
            try:
                lock.acquire(dbapi_conn)
            except BaseException as exc:  # the lock's timeout: the group fails, nothing held
                self.error = exc
            self.granted.set()
            self._put(_WAKE)


class GroupCommitWriter:
    def __init__(
        self,
        engine: Engine,
        call_from_thread: Callable,
        *,
        max_batch: int = 256,
        faults: dict[str, str] | None = None,
    ):
        self.engine = engine
        self.call_from_thread = call_from_thread
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._carry: collections.deque = collections.deque()  # frames taken off the queue while
        # gathering, for the next group
        self._waiter = _LockWaiter(self._queue.put)
        self.pending = 0  # frames submitted and not yet answered (read on the reactor thread)
        self.batches = 0
        self.gathered = 0  # frames that joined a group while it waited for the write lock
        self.on_outcome: Callable[[Inbound, Outcome], None] | None = None
        self.faults = faults_from_env() if faults is None else faults
        if self.faults:
            log.warning("fault injection active (test only): %s", ", ".join(sorted(self.faults)))
        self._kill_after = self.faults.get("kill_after_commit")
        self._delay = float(self.faults.get("commit_delay") or 0)
        if self.faults.get("db_down_file"):
            _install_db_down(engine.db, self.faults["db_down_file"])
        if self.faults.get("poison_control_id"):
            _install_poison(engine, self.faults["poison_control_id"])

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        self._waiter.stop()

    def submit(self, inbound: Inbound) -> Deferred:
        d: Deferred = Deferred()
        self.pending += 1
        self._queue.put((inbound, d))
        return d

    def _get(self, block: bool = True):
        """The next frame (or _STOP): what gathering set aside first, then the queue; the lock
        waiter's stale wake-ups are skipped. Raises ``queue.Empty`` when not ``block``ing."""
        if self._carry:
            return self._carry.popleft()
        while True:
            item = self._queue.get() if block else self._queue.get_nowait()
            if item is not _WAKE:
                return item

    def _run(self) -> None:
        while True:
            first = self._get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._get(block=False)
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            if self._delay:
                time.sleep(self._delay)  # fault injection: a slow database
            try:
                outcomes, stop = self._receive(batch, stop)
            except Exception as exc:  # nothing was committed: each frame on its own, so that
                # one frame's failure is never its group's (the engine already isolates what it
                # knows of; this is for the rest)
                log.error(
                    "receive failed for a group of %d (%s); frame by frame", len(batch), type(exc).__name__
                )
                outcomes = self._one_by_one(batch)
            if (
                self._kill_after
                and outcomes
                and any(
                    m.control_id == self._kill_after and m.status in ("accepted", "processed")
                    for o in outcomes
                    if o is not None
                    for m in o.messages
                )
            ):
                os.kill(os.getpid(), signal.SIGKILL)  # fault injection: committed, ACK never written
            self.batches += 1
            self.call_from_thread(self._deliver, batch, outcomes)
            if stop and not self._carry:
                return
            if stop:  # frames set aside while gathering are answered before stopping
                self._carry.append(_STOP)

    def _one_by_one(self, batch: list) -> list[Outcome | None]:
        """Each frame in a group of its own; None for a frame that fails even alone (its
        connection is closed unanswered, and the sender resends: nothing was committed)."""
        out: list[Outcome | None] = []
        for inb, _ in batch:
            try:
                out.append(self.engine.receive_many([inb])[0])
            except Exception as exc:
                log.error("receive failed for one frame (%s)", type(exc).__name__)
                out.append(None)
        return out

    def _receive(self, batch: list, stop: bool) -> tuple[list[Outcome], bool]:
        """Prepare the group, take the write lock (gathering more frames into the group while
        it is taken elsewhere), commit. Frames that join are appended to ``batch``."""
        engine = self.engine
        group = engine.prepare_group([inb for inb, _ in batch])
        lock = write_lock_of(engine.db)
        if lock is None:  # PostgreSQL: no write lock to wait for
            return engine.commit_group(group), stop
        with engine.db.connect() as conn:
            dbapi_conn = conn.connection.dbapi_connection
            if not lock.try_acquire(dbapi_conn):
                stop = self._gather(lock, dbapi_conn, batch, group, stop)
                if self._waiter.error is not None:
                    return engine.fail_group(group, self._waiter.error), stop
            return engine.commit_group(group, conn), stop  # (the checkin releases the lock if
            # the commit never ran)

    def _gather(self, lock: WriteLock, dbapi_conn, batch: list, group: Group, stop: bool) -> bool:
        """Wait for the write lock, preparing the frames that arrive meanwhile into ``group``
        (at most ``max_batch`` in all; the rest, and anything once the lock is granted, wait
        for the next group). Returns whether _STOP was seen."""
        waiter = self._waiter
        waiter.request(lock, dbapi_conn)
        try:
            while not waiter.granted.is_set():
                item = self._queue.get()
                if item is _WAKE:
                    continue
                if item is _STOP:
                    stop = True
                    continue
                if stop or len(batch) >= self.max_batch or waiter.granted.is_set():
                    self._carry.append(item)
                    continue
                batch.append(item)
                self.engine.prepare_group([item[0]], group)
                self.gathered += 1
        except BaseException:
            waiter.granted.wait()  # the lock is ours (released when the connection is checked
            raise  # in) or given up: never granted to a connection already back in the pool
        return stop

    def _deliver(self, batch, outcomes) -> None:
        for i, (inb, d) in enumerate(batch):
            self.pending -= 1
            if outcomes is None or outcomes[i] is None:
                d.errback(RuntimeError("receive failed"))
                continue
            if self.on_outcome is not None:
                try:
                    self.on_outcome(inb, outcomes[i])
                except Exception:
                    log.exception("outcome hook failed")
            d.callback(outcomes[i])
