"""Tables of scanned paper: the batches received and the documents cut from them.

* ``scan_batches`` – one row per file received (drop folder, console upload or API), keyed by
  the SHA-256 of its bytes (the bytes themselves are in the content store, like a document's):
  written and committed before the file leaves the drop folder or the upload is answered, so a
  batch acknowledged is a batch kept. The same bytes again are the same batch (``seen`` counts
  them). ``status``: ``received`` (waiting for the scan worker), ``separated`` (cut into
  documents) or ``rejected`` (``reason`` says why: not an image or PDF, encrypted, no pages,
  unreadable). ``pdf_sha256`` is the batch as one PDF (images converted), whose pages the
  documents name.
* ``scan_documents`` – one row per document separated from a batch (by its cover sheet, or the
  pages before the first one). ``pages`` is JSON, in order: ``[{batch, page, rotate, blank, ink,
  confidence}]`` (``page`` 0-based in the batch PDF; split and merge move these between rows).
  ``status``: ``ocr`` (waiting for its text layer), ``queued`` (for a clerk: ``reason``),
  ``filed`` (``document_id`` the ``documents`` row), ``deleted``. The OCR step has its own
  attempts and schedule (``ocr_*``) so a failing OCR is retried without holding anything else.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from interface.store.schema import TS, Id, metadata

scan_batches = Table(
    "scan_batches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("channel", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # folder | upload | api
    Column("filename", String(250)),
    Column("size", Integer, nullable=False),
    Column("media_type", String(64)),
    Column("pages", Integer),
    Column("status", String(16), nullable=False),  # received | separated | rejected
    Column("reason", Text),
    Column("pdf_sha256", String(64)),
    Column("seen", Integer, nullable=False, default=1),
    Column("received_at", TS, nullable=False),
    Column("received_by", String(128)),
    Column("processed_at", TS),
)
Index("ix_scan_batches_status", scan_batches.c.status, scan_batches.c.id)

scan_documents = Table(
    "scan_documents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("batch_id", Id, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # ocr | queued | filed | deleted
    Column("reason", String(32)),  # why it waits for a clerk
    Column("pages", Text, nullable=False),  # JSON [{batch, page, rotate, blank, ink, confidence}]
    Column("cover", Text),  # JSON of the cover sheet (interface.rules.coversheet), None without one
    Column("flags", Text, nullable=False, default="[]"),  # JSON quality findings, in words
    Column("mrn", String(128)),
    Column("visit_number", String(128)),
    Column("type", String(250)),
    Column("document_date", String(40)),
    Column("author", String(250)),
    Column("document_id", Id),
    Column("document_number", String(199)),
    Column("ocr_status", String(16), nullable=False),  # pending | done | failed
    Column("ocr_attempts", Integer, nullable=False, default=0),
    Column("ocr_next_at", TS),
    Column("ocr_error", Text),
    Column("ocr_sha256", String(64)),  # the PDF with its text layer
    Column("ocr_pages", String(64)),  # a digest of the page list that was OCR'd
    Column("text", Text),  # the OCR text, for search and candidate suggestions
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("indexed_by", String(128)),
    Column("indexed_at", TS),
)
Index("ix_scan_documents_status", scan_documents.c.status, scan_documents.c.id)
Index("ix_scan_documents_batch", scan_documents.c.batch_id)
Index("ix_scan_documents_ocr", scan_documents.c.ocr_status, scan_documents.c.ocr_next_at)
Index("ix_scan_documents_mrn", scan_documents.c.mrn)
