"""A daemon thread that polls a ``run_once`` until stopped, idle-waiting on an event."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("interface.engine.processing")


def polling_thread(
    name: str, run_once, stop: threading.Event, wake: threading.Event, idle_wait: float = 0.5, on_exit=None
) -> threading.Thread:
    """Start a daemon thread that calls ``run_once()`` (returns how much it did) until ``stop`` is
    set, sleeping on ``wake`` (or ``idle_wait`` seconds) whenever a round found nothing to do. A
    round that raises is logged and counts as idle, so one bad round never kills the thread."""

    def loop():
        while not stop.is_set():
            try:
                n = run_once()
            except Exception:
                log.exception("%s round failed", name)
                n = 0
            if n == 0:
                wake.wait(idle_wait)
                wake.clear()
        if on_exit is not None:
            on_exit()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
