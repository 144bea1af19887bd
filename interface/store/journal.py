"""The inbound journal: raw bytes + header columns + the ACK, and the work items, in one transaction.

Functions here take a Connection already in a transaction and never commit: the engine commits
once per group of messages (group commit) and only then are ACKs released.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from interface.store import fastsql
from interface.store.schema import events, messages, work_attempts, work_items, work_keys
from interface.store.search_text import indexed_bytes


@dataclass(slots=True)
class JournalRow:
    """One message's journal columns, prepared by the engine before the transaction."""

    channel: str
    received_at: datetime
    peer: str | None
    raw: bytes
    body_sha256: str
    status: str
    ack: bytes | None
    ack_code: str | None
    dedup_key: str | None = None
    sending_application: str | None = None
    sending_facility: str | None = None
    receiving_application: str | None = None
    receiving_facility: str | None = None
    control_id: str | None = None
    message_type: str | None = None
    structure: str | None = None
    version: str | None = None
    message_time: str | None = None
    patient_id: str | None = None
    error_code: str | None = None
    error_text: str | None = None
    warning: str | None = None
    parent_id: int | None = None
    batch_index: int | None = None
    # not columns: the work items to create once the row id is known
    work: list["WorkSpec"] = field(default_factory=list)
    item_ids: list[int] = field(default_factory=list)  # set by insert_rows, one per ``work``
    # journalled as applied in this same transaction (the engine's first-in-line path): the
    # message ``processed``, its one item ``done`` with its attempt, no ordering keys; undone
    # by ``demote`` if the applying fails
    applied: bool = False
    # what the full-text index reads of ``raw`` (None: ``raw`` itself), computed here, before the
    # transaction, not under the journal's write lock
    search_raw: bytes | None = None

    def __post_init__(self) -> None:
        self.search_raw = indexed_bytes(self.raw)

    def columns(self) -> dict:
        return {k: getattr(self, k) for k in _COLUMNS}


@dataclass(slots=True)
class WorkSpec:
    destination: str
    keys: tuple[str, ...]
    status: str = "pending"
    reason: str | None = None
    error_location: str | None = None
    last_error: str | None = None


_COLUMNS = (
    "channel",
    "received_at",
    "peer",
    "raw",
    "body_sha256",
    "status",
    "ack",
    "ack_code",
    "dedup_key",
    "sending_application",
    "sending_facility",
    "receiving_application",
    "receiving_facility",
    "control_id",
    "message_type",
    "structure",
    "version",
    "message_time",
    "patient_id",
    "error_code",
    "error_text",
    "warning",
    "parent_id",
    "batch_index",
    "search_raw",
)


# the header columns of ``messages`` and their lengths (values past them are cut, never refused)
HEADER_COLUMNS = (
    ("sending_application", 227),
    ("sending_facility", 227),
    ("receiving_application", 227),
    ("receiving_facility", 227),
    ("control_id", 199),
    ("message_type", 32),
    ("structure", 16),
    ("version", 16),
    ("message_time", 32),
)


def header_columns(header) -> dict[str, str]:
    """A message's header as the ``messages`` columns hold it: every journal row (received,
    resubmitted, an application ACK) is stored through this one mapping."""
    return {name: getattr(header, name)[:length] for name, length in HEADER_COLUMNS}


def find_existing(conn: Connection, dedup_keys: list[str]) -> dict[str, tuple[int, str, bytes | None]]:
    """dedup_key -> (message id, body sha256, stored ACK) for keys already in the journal."""
    if not dedup_keys:
        return {}
    out = {}
    for chunk in fastsql.chunks(dedup_keys):
        rows = fastsql.run(conn, _find_existing(len(chunk)), fastsql.in_values("k", chunk))
        for key, mid, sha, ack in rows:
            out[key] = (mid, sha, ack)
    return out


@functools.lru_cache(maxsize=64)
def _find_existing(n: int) -> fastsql.Statement:
    """``find_existing``'s SELECT for ``n`` keys (one bind each: it runs through fastsql)."""
    return fastsql.Statement(
        select(messages.c.dedup_key, messages.c.id, messages.c.body_sha256, messages.c.ack).where(
            messages.c.dedup_key.in_(fastsql.in_binds("k", n))
        )
    )


# the journal's inserts, per group commit (interface.store.fastsql: compiled once, on the cursor)
_INSERT_MESSAGES = fastsql.Statement(insert(messages).returning(messages.c.id), keyed=True)
_INSERT_ITEMS = fastsql.Statement(insert(work_items).returning(work_items.c.id), keyed=True)
_INSERT_KEYS = fastsql.Statement(insert(work_keys), keyed=True)
_INSERT_ATTEMPTS = fastsql.Statement(insert(work_attempts), keyed=True)


def insert_rows(conn: Connection, rows: list[JournalRow], now: datetime) -> list[int]:
    """Insert journal rows and their work items; returns the message ids in order. Rows marked
    ``applied`` go in as processed, their item done (attempt 1 recorded), with no ordering keys
    held: the caller applies them in this transaction, or calls :func:`demote`."""
    if not rows:
        return []
    cols = [r.columns() for r in rows]
    for c, r in zip(cols, rows):
        if r.applied:
            c["status"] = "processed"
    ids = [row.id for row in fastsql.run_many_returning(conn, _INSERT_MESSAGES, cols)]
    items = []
    item_keys = []
    for mid, r in zip(ids, rows):
        for w in r.work:
            done = r.applied
            items.append(
                dict(
                    message_id=mid,
                    channel=r.channel,
                    destination=w.destination,
                    key=w.keys[0] if w.keys else f"none:{mid}",
                    status="done" if done else w.status,
                    attempts=1 if done else 0,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                    reason=w.reason,
                    error_location=w.error_location,
                    last_error=w.last_error,
                )
            )
            item_keys.append(w.keys if w.status == "pending" and not done else ())
    if items:
        res = fastsql.run_many_returning(conn, _INSERT_ITEMS, items)
        owners = [r for r in rows for _ in r.work]
        keys = []
        attempts = []
        for (item_id,), ks, owner in zip(res, item_keys, owners):
            owner.item_ids.append(item_id)
            for k in dict.fromkeys(ks):
                keys.append({"item_id": item_id, "key": k})
            if owner.applied:
                attempts.append({"item_id": item_id, "at": now, "outcome": "done", "error": None})
        if keys:
            fastsql.run_many(conn, _INSERT_KEYS, keys)
        if attempts:
            fastsql.run_many(conn, _INSERT_ATTEMPTS, attempts)
    return ids


def demote(conn: Connection, pairs: list[tuple[int, JournalRow]]) -> None:
    """Undo ``applied`` for (message id, row) pairs whose applying failed (and was rolled back):
    the message accepted, its items pending with no attempt, their ordering keys held — exactly
    as :func:`insert_rows` writes an ordinary row."""
    mids = [mid for mid, _ in pairs]
    items = [i for _, r in pairs for i in r.item_ids]
    conn.execute(update(messages).where(messages.c.id.in_(mids)).values(status="accepted"))
    conn.execute(update(work_items).where(work_items.c.id.in_(items)).values(status="pending", attempts=0))
    conn.execute(delete(work_attempts).where(work_attempts.c.item_id.in_(items)))
    keys = [
        {"item_id": i, "key": k}
        for _, r in pairs
        for i, w in zip(r.item_ids, r.work)
        for k in dict.fromkeys(w.keys)
    ]
    if keys:
        fastsql.run_many(conn, _INSERT_KEYS, keys)
    for _, r in pairs:
        r.applied = False


def record_event(
    conn: Connection,
    *,
    at: datetime,
    kind: str,
    channel: str | None = None,
    peer: str | None = None,
    detail: str | None = None,
) -> None:
    conn.execute(insert(events).values(at=at, kind=kind, channel=channel, peer=peer, detail=detail))


def set_status(conn: Connection, message_id: int, status: str) -> None:
    conn.execute(update(messages).where(messages.c.id == message_id).values(status=status))
