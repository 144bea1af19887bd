"""Group commit: one thread owns journal writes; frames from every connection share transactions.

The reactor thread only hands frames over (``submit`` returns a Deferred) and gets outcomes back
with ``callFromThread``; it never touches the database. The writer takes whatever is waiting (up
to ``max_batch``), runs ``Engine.receive_many`` on it — one transaction, one fsync — and releases
the ACKs. Under load this turns N fsyncs into one; at one connection it adds nothing but a queue
hop. If the writer falls behind, ``pending`` grows and the transport stops reading (backpressure).
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from twisted.internet.defer import Deferred

from .engine import Engine, Inbound, Outcome

log = logging.getLogger("interface.writer")
_STOP = object()


class GroupCommitWriter:
    def __init__(self, engine: Engine, call_from_thread: Callable, *, max_batch: int = 256):
        self.engine = engine
        self.call_from_thread = call_from_thread
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.pending = 0  # frames submitted and not yet answered (read on the reactor thread)
        self.batches = 0
        self.on_outcome: Callable[[Inbound, Outcome], None] | None = None

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
            try:
                outcomes = self.engine.receive_many([inb for inb, _ in batch])
            except Exception:  # never leave a sender hanging; nothing was committed
                log.exception("receive failed for a batch of %d", len(batch))
                outcomes = None
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
