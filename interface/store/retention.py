"""Retention: delete old journal rows that are finished with, in bounded batches.

``interface db prune --older-than DAYS [--channel NAME]`` deletes messages received before the
cutoff whose work is over — status ``processed``, ``discarded``, ``rejected`` or ``resubmitted``
(an original replaced by an edited copy) and no work item still pending, held or in error —
together with their work items and attempt history, and wire events older than the cutoff.
The trends table (:mod:`interface.store.channel_stats`) is pruned to its own windows at the same
time (minutes older than 24 hours, hours older than 30 days). It never touches a message that is queued, held, in the error queue or quarantined: a clerk
discards those (with a reason, audited) and a later prune removes them. An original whose edited
copy is still kept stays until the copy goes. The audit trail is never pruned; neither are the
chart and the document index (they are the record; their ``message_id`` may then point to a
pruned message).

Each batch (default 1000 messages) is its own short transaction, so the engine keeps running
while pruning. Space: on SQLite, databases created by this version use ``auto_vacuum =
INCREMENTAL`` and prune ends with ``PRAGMA incremental_vacuum``, which returns the freed pages
to the file system; an older database needs one ``--vacuum`` (a full VACUUM, engine stopped) to
switch. On PostgreSQL autovacuum makes the space reusable for new rows; ``--vacuum`` runs a plain
``VACUUM (ANALYZE)`` of the journal tables at once (no exclusive lock; the file does not shrink).

A message pruned is forgotten by duplicate detection too: keep the retention period far longer
than any sender's resend window (days, not minutes).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.engine import Engine

from interface.store import channel_controls, channel_stats
from interface.store.schema import events, messages, work_attempts, work_items, work_keys

PRUNABLE = ("processed", "discarded", "rejected", "resubmitted")
FINISHED_ITEMS = ("done", "discarded")
DEFAULT_DAYS = 30.0
DEFAULT_BATCH = 1000


@dataclass
class PruneResult:
    messages: int = 0
    work_items: int = 0
    events: int = 0
    batches: int = 0
    stats: int = 0  # trend rows past their keep (24 h of minutes, 30 days of hours)


def _candidates(cutoff: datetime, channels: list[str] | None, limit: int):
    child = messages.alias()
    unfinished = select(work_items.c.id).where(
        work_items.c.message_id == messages.c.id, work_items.c.status.notin_(FINISHED_ITEMS)
    )
    q = (
        select(messages.c.id)
        .where(
            messages.c.received_at < cutoff,
            messages.c.status.in_(PRUNABLE),
            ~exists(unfinished),
            ~exists(select(child.c.id).where(child.c.parent_id == messages.c.id)),
        )
        .order_by(messages.c.id)
        .limit(limit)
    )
    if channels:
        q = q.where(messages.c.channel.in_(channels))
    return q


def count(engine: Engine, *, older_than: timedelta, now: datetime, channels: list[str] | None = None) -> int:
    """How many messages a prune would delete now (resubmitted originals counted once their
    copy goes are not included)."""
    sub = _candidates(now - older_than, channels, 2**62).subquery()
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(sub)).scalar_one()


def prune(
    engine: Engine,
    *,
    older_than: timedelta,
    now: datetime,
    channels: list[str] | None = None,
    batch: int = DEFAULT_BATCH,
) -> PruneResult:
    """Delete finished messages received before ``now - older_than`` (see the module docstring),
    ``batch`` messages per transaction, then old wire events; returns the counts."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    cutoff = now - older_than
    result = PruneResult()
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(_candidates(cutoff, channels, batch)).scalars())
            if not ids:
                break
            item_ids = select(work_items.c.id).where(work_items.c.message_id.in_(ids))
            conn.execute(delete(work_attempts).where(work_attempts.c.item_id.in_(item_ids)))
            conn.execute(delete(work_keys).where(work_keys.c.item_id.in_(item_ids)))
            result.work_items += conn.execute(
                delete(work_items).where(work_items.c.message_id.in_(ids))
            ).rowcount
            result.messages += conn.execute(delete(messages).where(messages.c.id.in_(ids))).rowcount
            result.batches += 1
    ev = events.c.at < cutoff
    if channels:
        ev = and_(ev, events.c.channel.in_(channels))
    while True:
        with engine.begin() as conn:
            ids = list(
                conn.execute(select(events.c.id).where(ev).order_by(events.c.id).limit(batch)).scalars()
            )
            if not ids:
                break
            result.events += conn.execute(delete(events).where(events.c.id.in_(ids))).rowcount
    with engine.begin() as conn:  # the trends keep their own windows, whatever --older-than says
        result.stats = channel_stats.prune(conn, now)
        channel_controls.prune_listeners(conn, now)
    return result


def reclaim(engine: Engine, *, full: bool = False) -> str:
    """Give freed space back (SQLite) or make it reusable now (PostgreSQL); says what it did."""
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "sqlite":  # outside any transaction (VACUUM requires it)
            cur = raw.cursor()
            if full:
                cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
                cur.execute("VACUUM")
                return "VACUUM done; incremental vacuum enabled"
            mode = cur.execute("PRAGMA auto_vacuum").fetchone()[0]
            if mode != 2:
                return "this SQLite file does not use incremental vacuum: run `interface db prune --vacuum` once, engine stopped"
            free = cur.execute("PRAGMA freelist_count").fetchone()[0]
            cur.executescript("PRAGMA incremental_vacuum;")  # steps to the end (execute frees one page)
            return f"incremental vacuum: {free} free page(s) returned"
    finally:
        raw.close()
    if not full:
        return "PostgreSQL autovacuum will make the space reusable"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("messages", "work_items", "work_attempts", "work_keys", "events"):
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")  # fixed table names, nothing from input
    return "VACUUM (ANALYZE) of the journal tables done"


def prune_cli(engine: Engine, opts) -> int:
    now = datetime.now(timezone.utc)
    older = timedelta(days=opts.older_than)
    if opts.older_than < 0 or opts.batch < 1:
        print("--older-than must be >= 0 and --batch >= 1", file=sys.stderr)
        return 2
    if opts.dry_run:
        n = count(engine, older_than=older, now=now, channels=opts.channel)
        print(f"would delete {n} message(s) received before {(now - older).isoformat(timespec='seconds')}")
        return 0
    r = prune(engine, older_than=older, now=now, channels=opts.channel, batch=opts.batch)
    print(
        f"deleted {r.messages} message(s), {r.work_items} work item(s), {r.events} event(s) "
        f"in {r.batches} batch(es), {r.stats} old trend row(s)"
    )
    print(reclaim(engine, full=opts.vacuum))
    return 0
