"""The release-of-information outbox's retry: one thread per engine process (``interface run``)
and per console run alone (``interface web``), when ``mail.yaml`` is there, that sends, every
``interval`` seconds, the e-mails due (pending, failed and due again, left half-sent by a process
that died): :func:`interface.desk.roi_delivery.send_due`, which takes each e-mail under its lock,
so several processes retrying one outbox send each e-mail once. A round that fails (database
down) is logged by its kind only and tried again; nothing in the log names a recipient or a
patient."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from interface.desk import roi_delivery

log = logging.getLogger("interface.ops.roi_outbox")


class OutboxSender:
    def __init__(self, db, mail, *, clock=lambda: datetime.now(timezone.utc), interval: float = 60.0):
        self.db, self.mail, self.clock, self.interval = db, mail, clock, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One round: the e-mails tried (sent or failed)."""
        return len(roi_delivery.send_due(self.db, self.mail, now=self.clock()))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the database may be down: try again next round
                log.error("release-of-information outbox round failed: %s", type(exc).__name__)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="roi-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def start(
    db, mail, *, clock=lambda: datetime.now(timezone.utc), interval: float = 60.0
) -> Callable[[], None] | None:
    """Start the retry when outgoing mail is set up (``mail``: ``mail.yaml``); returns how to stop
    it, or None when there is no mail (nothing to retry). ``interface web`` runs it beside the
    console (:func:`interface.web.app.serve`'s ``background``)."""
    if mail is None:
        return None
    sender = OutboxSender(db, mail, clock=clock, interval=interval)
    sender.start()
    return sender.stop
