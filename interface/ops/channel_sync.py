"""One thread per engine process that keeps it and the database in step for the channels console:

* about once a second it reads ``channel_controls`` into the process's
  :class:`interface.engine.controls.Controls` (a pause made in the console of any process, or
  with ``interface channels pause``, takes effect here within ``refresh`` seconds — at once when
  made through this process's own console, which calls :meth:`ChannelSync.now`);
* every ten seconds (and when a listener binds, or a pause changes) it publishes the endpoints this process bound
  and their open connections to ``channel_listeners`` (withdrawn when it stops);
* every few seconds it flushes the trends counted in memory (:mod:`interface.store.channel_stats`)
  and once an hour deletes the rows past their keep.

A round that fails (database down) is logged and retried; counts not flushed are kept.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

from interface.store import channel_controls, channel_stats
from interface.store import db as dbmod

log = logging.getLogger("interface.ops.channel_sync")


def process_name() -> str:
    return f"{socket.gethostname()[:100]}:{os.getpid()}"


class ChannelSync:
    def __init__(
        self,
        db,
        runtime,
        *,
        clock=lambda: datetime.now(timezone.utc),
        refresh: float = 1.0,
        publish: float = 10.0,
        flush: float = 5.0,
        prune: float = 3600.0,
        on_change=None,
    ):
        self.db, self.runtime, self.clock = db, runtime, clock
        # the per-second read through a WAL snapshot on SQLite: it never takes the write lock
        self.reader, self._reader_private = dbmod.read_only_engine(db, pooled=False)
        self.refresh, self.publish_every, self.flush_every, self.prune_every = refresh, publish, flush, prune
        self.on_change = on_change  # called when something was paused or resumed
        self.process = process_name()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._dirty = True
        self._lock = threading.Lock()
        self._published = self._flushed = self._pruned = 0.0
        self._thread: threading.Thread | None = None
        runtime.sync = self

    def changed(self) -> None:
        """A listener bound or closed: publish at the next round (soon)."""
        self._dirty = True
        self._wake.set()

    def now(self) -> None:
        """Read the controls now (a pause made through this process's console)."""
        self.run_once(controls_only=True)

    def run_once(self, controls_only: bool = False) -> None:
        with self._lock:
            rt = self.runtime
            changed = rt.controls.refresh_from(self.reader)  # a read: no write lock on SQLite
            if changed and self.on_change is not None:
                self.on_change()
            if controls_only:
                return
            mono = time.monotonic()
            now = self.clock()
            if self._dirty or changed or mono - self._published >= self.publish_every:
                self._dirty = False
                self._published = mono
                rows = []
                for name, b in sorted(rt.bound.items()):
                    f = rt.factories.get(name)
                    if f is None:
                        continue
                    rows.append(
                        dict(
                            channel=name,
                            endpoint=b["endpoint"][:500],
                            host=(b["host"] or None) and str(b["host"])[:128],
                            port=b["port"],
                            connections=f.connections,
                            paused=int(rt.controls.intake_paused(name)),
                            started_at=b["started_at"],
                        )
                    )
                with self.db.begin() as conn:
                    channel_controls.publish(conn, self.process, rows, now)
            if mono - self._flushed >= self.flush_every:
                self._flushed = mono
                self.flush()
            if mono - self._pruned >= self.prune_every:
                self._pruned = mono
                with self.db.begin() as conn:
                    channel_stats.prune(conn, now)
                    channel_controls.prune_listeners(conn, now)

    def flush(self) -> int:
        data = self.runtime.stats.take()
        if not data:
            return 0
        try:
            with self.db.begin() as conn:
                return channel_stats.flush(conn, data)
        except Exception:
            self.runtime.stats.put_back(data)
            raise

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:
                log.warning("channel sync round failed: %s", type(exc).__name__)
            self._wake.wait(self.refresh)
            self._wake.clear()

    def start(self) -> None:
        try:
            self.run_once()
        except Exception as exc:
            log.warning("channel sync: first round failed: %s", type(exc).__name__)
        self._thread = threading.Thread(target=self._loop, name="channel sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.flush()
            with self.db.begin() as conn:
                channel_controls.withdraw(conn, self.process)
        except Exception as exc:
            log.warning("channel sync: final flush failed: %s", type(exc).__name__)
        if self._reader_private:
            self.reader.dispose()
