"""Group commit: one thread owns journal writes; frames from every connection share transactions.

The reactor thread only hands frames over (``submit`` returns a Deferred) and gets outcomes back
with ``callFromThread``; it never touches the database. The writer takes whatever is waiting (up
to ``max_batch``), runs ``Engine.receive_many`` on it — one transaction, one fsync — and releases
the ACKs. Under load this turns N fsyncs into one; at one connection it adds nothing but a queue
hop. If the writer falls behind, ``pending`` grows and the transport stops reading (backpressure).

Fault injection, for the reliability tests only (docs/reliability.md): the ``INTERFACE_FAULT``
environment variable is read here and nowhere else; it is a comma-separated list of
``kill_after_commit=CONTROL_ID`` (SIGKILL this process right after the transaction holding that
message committed, before its ACK is written: the lost-ACK window), ``commit_delay=SECONDS``
(wait before every journal transaction: a slow database) and ``db_down_file=PATH`` (while PATH
exists, every statement on the engine's database fails as if the database were unreachable).
Unset in production; an unknown name fails at start-up.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from typing import Callable

from twisted.internet.defer import Deferred

from .engine import Engine, Inbound, Outcome

log = logging.getLogger("interface.writer")
_STOP = object()
FAULT_ENV = "INTERFACE_FAULT"
FAULTS = ("kill_after_commit", "commit_delay", "db_down_file")


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
            raise OperationalError("(fault injection)", None, ConnectionError("database unavailable (injected)"))

    event.listen(db, "before_cursor_execute", check)


class GroupCommitWriter:
    def __init__(self, engine: Engine, call_from_thread: Callable, *, max_batch: int = 256,
                 faults: dict[str, str] | None = None):
        self.engine = engine
        self.call_from_thread = call_from_thread
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.pending = 0  # frames submitted and not yet answered (read on the reactor thread)
        self.batches = 0
        self.on_outcome: Callable[[Inbound, Outcome], None] | None = None
        self.faults = faults_from_env() if faults is None else faults
        if self.faults:
            log.warning("fault injection active (test only): %s", ", ".join(sorted(self.faults)))
        self._kill_after = self.faults.get("kill_after_commit")
        self._delay = float(self.faults.get("commit_delay") or 0)
        if self.faults.get("db_down_file"):
            _install_db_down(engine.db, self.faults["db_down_file"])

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, inbound: Inbound) -> Deferred:
        d: Deferred = Deferred()
        self.pending += 1
        self._queue.put((inbound, d))
        return d

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            if self._delay:
                time.sleep(self._delay)  # fault injection: a slow database
            try:
                outcomes = self.engine.receive_many([inb for inb, _ in batch])
            except Exception:  # never leave a sender hanging; nothing was committed
                log.exception("receive failed for a batch of %d", len(batch))
                outcomes = None
            if self._kill_after and outcomes and any(
                    o.control_id == self._kill_after and o.status in ("accepted", "processed")
                    for o in outcomes):
                os.kill(os.getpid(), signal.SIGKILL)  # fault injection: committed, ACK never written
            self.batches += 1
            self.call_from_thread(self._deliver, batch, outcomes)
            if stop:
                return

    def _deliver(self, batch, outcomes) -> None:
        for i, (inb, d) in enumerate(batch):
            self.pending -= 1
            if outcomes is None:
                d.errback(RuntimeError("receive failed"))
                continue
            if self.on_outcome is not None:
                try:
                    self.on_outcome(inb, outcomes[i])
                except Exception:
                    log.exception("outcome hook failed")
            d.callback(outcomes[i])
