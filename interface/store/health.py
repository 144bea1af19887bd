"""Whether journal commits are failing, for ``GET /api/health`` (:mod:`interface.web.api.health`).

No web imports: the engine imports it. The journal's commit path
(:meth:`interface.engine.inbound.Engine.commit_group` and ``fail_group``) calls :func:`record_commit_ok`
/ :func:`record_commit_failure` with one line each; the first costs one attribute read while
commits succeed. ``/api/health`` answers (no login; no patient data):

* ``200 {"status": "ok", "database": "ok", "reasons": []}``;
* ``503 {"status": "degraded", "database": "ok", "reasons": [...]}`` when this process's last
  journal commit failed (and none succeeded since: *why*, e.g. ``journal commits failing since
  2026-12-03T08:00:00Z: disk full``), or the database cannot take writes: on SQLite the
  database's directory is read-only or has less than ``api_health.MIN_FREE_BYTES`` free; on PostgreSQL
  a new transaction is read-only (a standby, ``default_transaction_read_only``);
* ``503 {"status": "error", "database": "unreachable", ...}`` when the database cannot be read.

Why a commit failed is said in a few fixed words chosen from the error (:func:`describe`),
never the database's message itself, which can quote values.

The recorder is the process's own: ``interface run`` serves the console from the engine process
(with ``--workers N`` from the first worker, which sees its own commits); ``interface web``
alone sees no commits and reports the database checks only.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone

_mutex = threading.Lock()
_failing: tuple[datetime, str] | None = None  # (since, why) while commits fail


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def describe(exc: BaseException | str) -> str:
    """A few fixed words for why a commit failed (never the error's own text)."""
    if isinstance(exc, str):
        return exc
    orig = getattr(exc, "orig", None) or exc
    msg = str(orig).lower()
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if "disk is full" in msg or "no space left" in msg or sqlstate == "53100":
        return "disk full"
    if "readonly database" in msg or "read-only" in msg or sqlstate == "25006":
        return "database read-only"
    if "fsync" in msg:
        return "fsync failed"
    if "locked" in msg:
        return "database locked too long"
    if "disk i/o error" in msg or sqlstate.startswith("58"):
        return "disk I/O error"
    if isinstance(orig, (sqlite3.OperationalError,)) or "connection" in msg or sqlstate.startswith("08"):
        return "database unavailable"
    return f"commit failed ({type(orig).__name__})"


def record_commit_failure(reason: BaseException | str, now: datetime | None = None) -> None:
    """A journal commit failed (``reason``: the exception or a few words)."""
    global _failing
    why = describe(reason)
    with _mutex:
        if _failing is None or _failing[1] != why:
            _failing = ((now or _utcnow()) if _failing is None else _failing[0], why)


def record_commit_ok() -> None:
    """A journal commit succeeded: commits are no longer failing."""
    global _failing
    if _failing is not None:
        with _mutex:
            _failing = None


def commit_failure() -> tuple[datetime, str] | None:
    """(since, why) while this process's journal commits fail, else None."""
    return _failing
