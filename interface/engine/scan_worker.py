"""The scan worker: drop folders in, batches separated, documents OCR'd, then filed or queued.

Runs in the engine process (a thread started by ``ops.service``); tests call :meth:`run_once`
with an injected clock. One round:

1. **Folders** (:class:`FolderWatcher`): a file that has kept its size and modification time
   since the previous round is read, journalled (``store.scan_intake.receive``, committed) and
   only then moved, atomically (``os.replace`` in the same file system), to ``accepted/`` or
   ``rejected/`` beside the inbox. A process that dies between the commit and the move sees the
   file again next time: its hash is known, so it is moved and nothing else happens.
2. **Separation**: each received batch is analysed (barcodes, ink) outside any transaction and
   cut into documents in one (``store.scan_documents.separate``); a batch another process
   separated first is left alone.
3. **OCR**: a document due for OCR is claimed by moving its ``ocr_next_at`` forward by a lease
   (a process that dies mid-OCR gives it up when the lease passes), OCR'd off any transaction,
   then checked and filed or queued in one. A failure is retried by the policy (backoff, at most
   ``max_attempts``); after the last, the document goes on without a text layer, flagged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine as DBEngine

from interface.config.scan import ScanChannel, settings_for
from interface.engine import ocr as ocrmod
from interface.store import scan_documents as sd
from interface.store import scan_pages
from interface.store.content import ContentStore
from interface.store.documents import DocumentSettings
from interface.store.scan_intake import batch as load_batch
from interface.store.scan_intake import receive
from interface.store.scan_schema import scan_batches, scan_documents
from interface.store.workqueue import RetryPolicy

log = logging.getLogger("interface.engine.scan")

PARTIAL = (".part", ".tmp", ".crdownload", ".partial")
LEASE = timedelta(minutes=15)
OCR_RETRY = RetryPolicy(initial_delay=30, factor=2, jitter=0.1, max_delay=3600, max_attempts=5)


class FolderWatcher:
    """One scan channel's drop folder."""

    def __init__(self, channel: ScanChannel):
        self.channel = channel
        self._sizes: dict[str, tuple[int, int]] = {}

    def ready(self) -> list[Path]:
        """Files that have not changed since the previous call (a scanner still writing one is
        left for the next round)."""
        inbox = self.channel.inbox_path
        inbox.mkdir(parents=True, exist_ok=True)
        seen: dict[str, tuple[int, int]] = {}
        out = []
        for p in sorted(inbox.iterdir()):
            if not p.is_file() or p.name.startswith(".") or p.name.lower().endswith(PARTIAL):
                continue
            st = p.stat()
            sig = (st.st_size, st.st_mtime_ns)
            if self._sizes.get(p.name) == sig:
                out.append(p)
            seen[p.name] = sig
        self._sizes = seen
        return out

    def take(self, db: DBEngine, store: ContentStore, path: Path, now: datetime) -> dict:
        data = path.read_bytes()
        with db.begin() as conn:
            row = receive(
                conn, store, data, channel=self.channel.name, source="folder", filename=path.name, now=now
            )
        # committed: now the file may leave the drop folder
        dest_dir = self.channel.rejected_path if row["status"] == "rejected" else self.channel.accepted_path
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{row['id']}-{path.name}"
        n = 1
        while dest.exists():
            n += 1
            dest = dest_dir / f"{row['id']}-{n}-{path.name}"
        os.replace(path, dest)
        self._sizes.pop(path.name, None)
        log.info(
            "scan batch=%s channel=%s status=%s duplicate=%s",
            row["id"],
            self.channel.name,
            row["status"],
            row["duplicate"],
        )
        return row


class ScanWorker:
    def __init__(
        self,
        db: DBEngine,
        *,
        channels: list[ScanChannel],
        settings: DocumentSettings,
        gate: sd.Gate,
        clock: Callable[[], datetime],
        ocr: Callable[[bytes], ocrmod.OcrResult] = ocrmod.run,
        policy: RetryPolicy = OCR_RETRY,
    ):
        self.db = db
        self.channels = channels
        self.watchers = [FolderWatcher(c) for c in channels if c.enabled]
        self.settings = settings
        self.gate = gate
        self.clock = clock
        self.ocr = ocr
        self.policy = policy
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def store(self) -> ContentStore:
        return self.settings.store()

    def run_once(self) -> dict:
        """One round (module docstring); returns counts ``{taken, separated, ocr}``."""
        taken = self.poll_folders()
        separated = self.separate_pending()
        done = 0
        while self.ocr_one():
            done += 1
        return {"taken": taken, "separated": separated, "ocr": done}

    def poll_folders(self) -> int:
        n = 0
        for w in self.watchers:
            for path in w.ready():
                try:
                    w.take(self.db, self.store, path, self.clock())
                    n += 1
                except OSError as exc:
                    log.error("scan channel=%s file not taken: %s", w.channel.name, type(exc).__name__)
        return n

    def separate_pending(self, limit: int = 20) -> int:
        with self.db.connect() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    select(scan_batches.c.id)
                    .where(scan_batches.c.status == "received")
                    .order_by(scan_batches.c.id)
                    .limit(limit)
                )
            ]
        n = 0
        for batch_id in ids:
            with self.db.connect() as conn:
                batch = load_batch(conn, batch_id)
                pdf = self.store.get(conn, batch["pdf_sha256"]) if batch else None
            if batch is None or pdf is None:
                continue
            analysis = scan_pages.analyse(pdf)
            channel = settings_for(self.channels, batch["channel"])
            with self.db.begin() as conn:
                made = sd.separate(conn, batch, analysis, channel, self.clock())
            log.info("scan batch=%s separated documents=%d", batch_id, len(made))
            n += 1
        return n

    def ocr_one(self) -> bool:
        """Claim, OCR and decide one due document; False when none is due."""
        now = self.clock()
        s = scan_documents
        with self.db.begin() as conn:
            row = conn.execute(
                select(s.c.id, s.c.ocr_next_at, s.c.ocr_attempts)
                .where(s.c.ocr_status == "pending", or_(s.c.ocr_next_at.is_(None), s.c.ocr_next_at <= now))
                .order_by(s.c.ocr_next_at, s.c.id)
                .limit(1)
            ).first()
            if row is None:
                return False
            claimed = conn.execute(
                update(s)
                .where(s.c.id == row.id, s.c.ocr_attempts == row.ocr_attempts, s.c.ocr_status == "pending")
                .values(ocr_next_at=now + LEASE, ocr_attempts=row.ocr_attempts + 1)
            ).rowcount
        if not claimed:
            return True  # another process took it; look for the next
        with self.db.connect() as conn:
            doc = sd.load(conn, row.id)
            assert doc is not None
            pdf = sd.assemble_pdf(conn, self.store, doc["pages"])
        attempts = row.ocr_attempts + 1
        try:
            result: ocrmod.OcrResult | None = self.ocr(pdf)
            error = None
        except ocrmod.OcrError as exc:
            result, error = None, str(exc)
        now = self.clock()
        with self.db.begin() as conn:
            doc = sd.load(conn, row.id)
            assert doc is not None
            if result is None and not self.policy.exhausted(attempts):
                delay = self.policy.delay(attempts)
                conn.execute(
                    update(s)
                    .where(s.c.id == doc["id"])
                    .values(ocr_error=error, ocr_next_at=now + timedelta(seconds=delay), updated_at=now)
                )
                log.warning(
                    "scan document=%s ocr attempt=%d failed; retry in %.0fs", doc["id"], attempts, delay
                )
                return True
            if result is not None:
                pages = doc["pages"]
                for p, c in zip(pages, result.confidence):
                    p["confidence"] = c
                sha = self.store.put(conn, result.pdf, now)
                values = dict(
                    ocr_status="done",
                    ocr_error=None,
                    ocr_sha256=sha,
                    ocr_pages=sd.pages_key(pages),
                    text=result.text,
                    pages=json.dumps(pages),
                    updated_at=now,
                )
                content = result.pdf
            else:
                values = dict(ocr_status="failed", ocr_error=error, updated_at=now)
                content = pdf
                log.error("scan document=%s ocr failed after %d attempts", doc["id"], attempts)
            conn.execute(update(s).where(s.c.id == doc["id"]).values(**values))
            doc = sd.load(conn, doc["id"])
            assert doc is not None
            if doc["status"] == "ocr":
                status = sd.decide(
                    conn,
                    doc,
                    gate=self.gate,
                    channel=settings_for(self.channels, self._channel_of(conn, doc)),
                    settings=self.settings,
                    pdf=content,
                    now=now,
                )
                log.info("scan document=%s %s", doc["id"], status)
            elif doc["status"] == "filed" and result is not None:
                sd.refresh_content(conn, doc, content, self.settings, now)
            elif doc["status"] == "queued":
                conn.execute(
                    update(s)
                    .where(s.c.id == doc["id"])
                    .values(
                        flags=json.dumps(
                            sd.quality(doc, settings_for(self.channels, self._channel_of(conn, doc)))
                        )
                    )
                )
        return True

    def _channel_of(self, conn, doc: dict) -> str:
        return conn.execute(
            select(scan_batches.c.channel).where(scan_batches.c.id == doc["batch_id"])
        ).scalar_one()

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scan", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        interval = min([c.poll_seconds for c in self.channels] or [5.0])
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("scan round failed")
            self.wake.wait(interval)
            self.wake.clear()
