"""Work items: ordered per key, retried by policy, parked, or put in the error queue.

Ordering rule: an item may run only when it is the oldest unfinished item for each of its keys
(one key, the patient; two for merges). ``work_keys`` holds the keys of unfinished items; a row
is deleted in the same transaction as the item's effects, so "oldest unfinished" is a single
indexed NOT EXISTS. A failing item keeps its keys, so it blocks only its own patient(s); every
other key keeps flowing. A held item (document for an unknown patient) gives its keys up and
waits on its own schedule.

On PostgreSQL the claim takes ``FOR UPDATE SKIP LOCKED`` inside the same transaction as the
effects: several engine processes share the queue, a key is never processed by two at once, and
a process that dies releases its claims by the rollback — no lease to expire.

Clerk actions (retry, discard with a reason, resubmit an edited copy) live here too, so the CLI
and the web console share one implementation; each writes the audit trail.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, bindparam, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection

from interface.store import fastsql
from interface.store.schema import messages, work_attempts, work_items, work_keys

OUT_PREFIX = "out:"  # keys of outbound lanes (interface.engine.destinations)
UNFINISHED = ("pending", "held", "error")
RUNNABLE = ("pending", "held")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; ``max_attempts`` includes the first try."""

    initial_delay: float = 1.0
    factor: float = 2.0
    jitter: float = 0.1
    max_delay: float = 300.0
    max_attempts: int = 10

    @classmethod
    def from_config(cls, r) -> "RetryPolicy":
        return cls(r.initial_delay_seconds, r.factor, r.jitter, r.max_delay_seconds, r.max_attempts)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_delay, self.initial_delay * (self.factor ** max(attempt - 1, 0)))
        if self.jitter:
            r = (rng or random).uniform(-self.jitter, self.jitter)
            base = max(0.0, base * (1 + r))
        return base

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


def _head_condition():
    """SQL: the item is the oldest unfinished item for every one of its keys."""
    k = work_keys.alias()
    k2 = work_keys.alias()
    earlier = (
        select(k.c.item_id)
        .join(k2, and_(k2.c.key == k.c.key, k2.c.item_id < k.c.item_id))
        .where(k.c.item_id == work_items.c.id)
    )
    return ~exists(earlier)


@functools.lru_cache(maxsize=256)
def _runnable_query(n_ids: int, outbound: bool | None, lane: bool, pg_lock: bool) -> fastsql.Statement:
    """The runnable-items SELECT for one shape, built and compiled once (the worker runs it every
    round, the journal writer once per group commit). ``n_ids``: the number of ``b_id<i>``
    parameters of its ``id IN (...)`` (0: no id filter) — one bind each rather than an expanding
    IN, so that it runs through ``fastsql``."""
    return fastsql.Statement(_runnable_select(n_ids, outbound, lane, pg_lock))


def _runnable_select(n_ids: int, outbound: bool | None, lane: bool, pg_lock: bool, exclude=()):
    """The SELECT of :func:`_runnable_query`; ``exclude``: (channel, destination) pairs whose
    items are skipped (destinations an analyst paused: rare, so that shape is not cached)."""
    q = (
        select(
            work_items.c.id,
            work_items.c.message_id,
            work_items.c.channel,
            work_items.c.destination,
            work_items.c.key,
            work_items.c.status,
            work_items.c.attempts,
            work_items.c.created_at,
        )
        .where(
            work_items.c.status.in_([bindparam(f"b_status{i}", v) for i, v in enumerate(RUNNABLE)]),
            work_items.c.next_attempt_at <= bindparam("b_now"),
            _head_condition(),
        )
        .order_by(work_items.c.id)
        .limit(bindparam("b_limit"))
    )
    if n_ids:
        q = q.where(work_items.c.id.in_(fastsql.in_binds("b_id", n_ids)))
    if outbound is not None:
        out = work_items.c.key.startswith(OUT_PREFIX, autoescape=True)
        q = q.where(out if outbound else ~out)
    if lane:
        q = q.where(work_items.c.key.like(bindparam("b_lane"), escape="/"))
    if exclude:
        q = q.where(
            ~or_(
                *(and_(work_items.c.channel == c, work_items.c.destination == d) for c, d in sorted(exclude))
            )
        )
    if pg_lock:
        q = q.with_for_update(skip_locked=True, of=work_items)
    return q


def runnable(
    conn: Connection,
    now: datetime,
    limit: int = 64,
    *,
    lock: bool = False,
    ids: list[int] | None = None,
    outbound: bool | None = None,
    lane: str | None = None,
    exclude: frozenset[tuple[str, str]] | None = None,
) -> list:
    """Items that may run now, oldest first, at most one per key. ``lock`` (PostgreSQL):
    claim them with FOR UPDATE SKIP LOCKED for the rest of the transaction.

    ``outbound``: False = store lanes only (the store worker), True = outbound lanes only
    (``out:`` keys, see ``interface.engine.destinations``); ``lane``: only keys with this prefix;
    ``exclude``: (channel, destination) pairs paused (their items wait)."""
    pg_lock = lock and conn.dialect.name == "postgresql"
    params: dict = {"b_now": now, "b_limit": limit}
    if lane is not None:
        params["b_lane"] = lane.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
    if exclude:
        rows = []
        for chunk in fastsql.chunks(ids) if ids is not None else [None]:
            q = _runnable_select(len(chunk) if chunk else 0, outbound, lane is not None, pg_lock, exclude)
            extra = fastsql.in_values("b_id", chunk) if chunk else {}
            rows += conn.execute(q, {**params, **extra}).all()
        rows = rows[:limit]
    elif ids is None:
        rows = fastsql.run(conn, _runnable_query(0, outbound, lane is not None, pg_lock), params).all()
    else:
        rows = []
        for chunk in fastsql.chunks(ids):
            q = _runnable_query(len(chunk), outbound, lane is not None, pg_lock)
            rows += fastsql.run(conn, q, {**params, **fastsql.in_values("b_id", chunk)}).all()
        rows = rows[:limit]
    if lock and rows:
        rows = _claim_keys(conn, rows)
    return rows


def _claim_keys(conn: Connection, rows: list) -> list:
    """PostgreSQL: also take a transaction-scoped advisory lock on every ordering key of each
    item (both keys of a merge), skipping items whose key another transaction holds. The row
    locks and the head rule already keep order; the key locks make "never two processes on one
    key" hold for items that gave their keys up (held) too. Released at commit, rollback, or
    when a dead process's connection closes. (SQLite: BEGIN IMMEDIATE already serialises.)"""
    from interface.store import claimtrace

    pg = conn.dialect.name == "postgresql"
    if not pg and not claimtrace.TRACE_PATH:
        return rows
    keys: dict[int, set[str]] = {r.id: {r.key} for r in rows}
    for item_id, key in conn.execute(
        select(work_keys.c.item_id, work_keys.c.key).where(work_keys.c.item_id.in_(list(keys)))
    ):
        keys[item_id].add(key)
    if pg:
        got = lock_keys(conn, set().union(*keys.values()))
        rows = [r for r in rows if keys[r.id] <= got]
    if claimtrace.TRACE_PATH:
        claimtrace.trace_claims(conn, rows, keys)
    return rows


@dataclass(frozen=True, slots=True)
class NewItem:
    """A work item applied in the transaction that creates it (the journal writer's first-in-line
    path, ``journal.JournalRow.applied``): the fields of a :func:`runnable` row that applying
    and the application ACK read."""

    id: int
    message_id: int
    channel: str
    destination: str
    key: str
    created_at: datetime
    status: str = "pending"
    attempts: int = 0


def trace_new(conn: Connection, items: list[NewItem], keys: dict[int, set[str]]) -> None:
    """Record the claims of first-in-line items as :func:`runnable` records its own (the
    ``INTERFACE_CLAIM_TRACE`` test hook of ``interface.ops.cluster``; nothing when it is unset)."""
    from interface.store import claimtrace

    if claimtrace.TRACE_PATH:
        claimtrace.trace_claims(conn, items, keys)


def lock_keys(conn: Connection, keys) -> set[str]:
    """PostgreSQL: take the transaction-scoped advisory lock of each ordering key that no other
    transaction holds; returns the keys now held. SQLite: all of them (BEGIN IMMEDIATE already
    serialises every writer)."""
    if conn.dialect.name != "postgresql":
        return set(keys)
    got = conn.execute(
        text(
            "SELECT k, pg_try_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k"
        ),
        {"keys": sorted(keys)},
    ).all()
    return {k for k, ok in got if ok}


def busy_keys(conn: Connection, keys) -> set[str]:
    """Those of these ordering keys that an unfinished item holds (``work_keys``): a new item
    with one of them is not first in line."""
    keys = sorted(set(keys))
    out: set[str] = set()
    for chunk in fastsql.chunks(keys):
        out.update(k for (k,) in fastsql.run(conn, _busy_keys(len(chunk)), fastsql.in_values("b_key", chunk)))
    return out


@functools.lru_cache(maxsize=64)
def _busy_keys(n: int) -> fastsql.Statement:
    return fastsql.Statement(
        select(work_keys.c.key).distinct().where(work_keys.c.key.in_(fastsql.in_binds("b_key", n)))
    )


# Built once, executed with parameters: rebuilding them with ``.values(literals)`` per item cost
# more CPU than the SQL itself (see docs/benchmarks.md).
# The hot ones run through ``fastsql`` (compiled once per dialect, executed on the cursor).
_DELETE_KEYS = delete(work_keys).where(work_keys.c.item_id == bindparam("b_item"))
_UPDATE_ITEM = update(work_items).where(work_items.c.id == bindparam("b_item"))
_INSERT_ATTEMPT = insert(work_attempts)
_ITEM_STATUSES = select(work_items.c.status).where(work_items.c.message_id == bindparam("b_msg"))
_UPDATE_MESSAGE_STATUS = update(messages).where(
    messages.c.id == bindparam("b_msg"), messages.c.status != "rejected", messages.c.status != "quarantined"
)
_RELEASE_HELD = (
    update(work_items)
    .where(work_items.c.status == "held", work_items.c.key == bindparam("b_key"))
    .values(next_attempt_at=bindparam("b_now"))
)
_F_DELETE_KEYS = fastsql.Statement(_DELETE_KEYS)
_F_UPDATE_ITEM = fastsql.Statement(_UPDATE_ITEM, keyed=True)
_F_INSERT_ATTEMPT = fastsql.Statement(_INSERT_ATTEMPT, keyed=True)
_F_ITEM_STATUSES = fastsql.Statement(_ITEM_STATUSES)
_F_UPDATE_MESSAGE_STATUS = fastsql.Statement(_UPDATE_MESSAGE_STATUS, keyed=True)
_F_RELEASE_HELD = fastsql.Statement(_RELEASE_HELD)


def mark_done(conn: Connection, item_id: int, message_id: int, now: datetime, attempts: int) -> None:
    _mark_done(conn, [(item_id, message_id, attempts)], now)


def mark_retry(
    conn: Connection, item_id: int, now: datetime, attempts: int, delay: float, error: str, reason: str
) -> None:
    """Transient failure: try again later; keeps its keys (the patient waits, in order)."""
    conn.execute(
        update(work_items)
        .where(work_items.c.id == item_id)
        .values(
            status="pending",
            attempts=attempts,
            next_attempt_at=now + timedelta(seconds=delay),
            updated_at=now,
            last_error=error[:4000],
            reason=reason,
        )
    )
    conn.execute(insert(work_attempts).values(item_id=item_id, at=now, outcome="retry", error=error[:4000]))


def mark_error(
    conn: Connection,
    item_id: int,
    message_id: int,
    now: datetime,
    attempts: int,
    error: str,
    reason: str,
    location: str | None,
) -> None:
    """Into the error queue. Keeps its keys: later messages for this patient wait behind it."""
    conn.execute(
        update(work_items)
        .where(work_items.c.id == item_id)
        .values(
            status="error",
            attempts=attempts,
            updated_at=now,
            last_error=error[:4000],
            reason=reason,
            error_location=location,
        )
    )
    conn.execute(insert(work_attempts).values(item_id=item_id, at=now, outcome="error", error=error[:4000]))
    _refresh_message_status(conn, message_id)


def mark_held(
    conn: Connection, item_id: int, now: datetime, attempts: int, recheck: float, error: str, reason: str
) -> None:
    """Parked (e.g. unknown patient): gives its keys up so it blocks nobody, retried later."""
    conn.execute(delete(work_keys).where(work_keys.c.item_id == item_id))
    conn.execute(
        update(work_items)
        .where(work_items.c.id == item_id)
        .values(
            status="held",
            attempts=attempts,
            next_attempt_at=now + timedelta(seconds=recheck),
            updated_at=now,
            last_error=error[:4000],
            reason=reason,
        )
    )
    conn.execute(insert(work_attempts).values(item_id=item_id, at=now, outcome="held", error=error[:4000]))


def mark_done_many(conn: Connection, items: list, now: datetime) -> None:
    """``mark_done`` for a chunk of claimed items (``runnable`` rows) in one go: three
    executemany and one status refresh for their messages, instead of five statements each."""
    _mark_done(conn, [(i.id, i.message_id, i.attempts + 1) for i in items], now)


def _mark_done(conn: Connection, done: list[tuple[int, int, int]], now: datetime) -> None:
    """(item id, message id, attempts) of items that are done: keys released, state, attempt."""
    if not done:
        return
    fastsql.run_many(conn, _F_DELETE_KEYS, [{"b_item": item} for item, _, _ in done])
    fastsql.run_many(
        conn,
        _F_UPDATE_ITEM,
        [
            {"b_item": item, "status": "done", "attempts": attempts, "updated_at": now, "reason": None}
            for item, _, attempts in done
        ],
    )
    fastsql.run_many(
        conn,
        _F_INSERT_ATTEMPT,
        [{"item_id": item, "at": now, "outcome": "done", "error": None} for item, _, _ in done],
    )
    message_ids = sorted({mid for _, mid, _ in done})
    if len(message_ids) == 1:
        _refresh_message_status(conn, message_ids[0])
        return
    statuses: dict[int, set[str]] = {m: set() for m in message_ids}
    for mid, status in conn.execute(_MESSAGE_ITEM_STATUSES, {"b_msgs": message_ids}):
        statuses[mid].add(status)
    updates = [
        {"b_msg": mid, "status": status}
        for mid, st in statuses.items()
        if (status := _message_status(st)) is not None
    ]
    if updates:
        fastsql.run_many(conn, _F_UPDATE_MESSAGE_STATUS, updates)


_MESSAGE_ITEM_STATUSES = select(work_items.c.message_id, work_items.c.status).where(
    work_items.c.message_id.in_(bindparam("b_msgs", expanding=True))
)


def _message_status(statuses: set[str]) -> str | None:
    """A message is processed when all its items are done, error if any is in error."""
    if not statuses:
        return None
    if "error" in statuses:
        return "error"
    if statuses <= {"done", "discarded"}:
        return "processed" if "done" in statuses else "discarded"
    return None


def release_held(conn: Connection, mrn: str, now: datetime) -> int:
    """A patient became known: retry items held for that MRN now. Returns how many."""
    res = fastsql.run(conn, _F_RELEASE_HELD, {"b_key": f"mrn:{mrn}", "b_now": now})
    return res.rowcount or 0


def _refresh_message_status(conn: Connection, message_id: int) -> None:
    """A message is processed when all its items are done, error if any is in error."""
    rows = fastsql.run(conn, _F_ITEM_STATUSES, {"b_msg": message_id}).all()
    status = _message_status({r.status for r in rows})
    if status is not None:
        fastsql.run(conn, _F_UPDATE_MESSAGE_STATUS, {"b_msg": message_id, "status": status})


# ---------------------------------------------------------------------------------------------
# clerk actions


# ---------------------------------------------------------------------------------------------
# what waits behind what (the error queue's and the dashboard's figures)


def waiting_behind(conn: Connection, item_ids) -> dict[int, int]:
    """{item id: how many unfinished items with a later id share one of its ordering keys}
    (``work_keys``; a merge's item has two keys, an item behind both counts once). Only items
    that still hold keys have anything behind them: a done, discarded or held item (held gives
    its keys up) has 0."""
    ids = sorted({int(i) for i in item_ids})
    out = dict.fromkeys(ids, 0)
    if not ids:
        return out
    k = work_keys.alias()
    later = work_keys.alias()
    for chunk in fastsql.chunks(ids):
        q = (
            select(k.c.item_id, func.count(later.c.item_id.distinct()))
            .join(later, and_(later.c.key == k.c.key, later.c.item_id > k.c.item_id))
            .where(k.c.item_id.in_(chunk))
            .group_by(k.c.item_id)
        )
        for item_id, n in conn.execute(q):
            out[item_id] = n
    return out


@dataclass(frozen=True)
class Waiting:
    """Per channel: items blocked behind an item in error (sharing a key with an earlier error
    item) and held items (unknown patient waiting for its ADT), with the oldest of each."""

    blocked: int = 0
    held: int = 0
    oldest_blocked: datetime | None = None
    oldest_held: datetime | None = None

    @property
    def oldest(self) -> datetime | None:
        times = [t for t in (self.oldest_blocked, self.oldest_held) if t is not None]
        return min(times) if times else None


def waiting_by_channel(conn: Connection) -> dict[str, Waiting]:
    """{channel: Waiting} for the channels that have blocked or held items. Blocked: an
    unfinished item that shares an ordering key with an earlier item in status ``error`` (it
    cannot run until a clerk retries, resubmits or discards that one). Starts from the error
    items (the status index), so it costs little while the queue is healthy."""
    err = work_items.alias()
    ek = work_keys.alias()
    bk = work_keys.alias()
    behind = (
        select(bk.c.item_id)
        .join(ek, and_(ek.c.key == bk.c.key, ek.c.item_id < bk.c.item_id))
        .join(err, and_(err.c.id == ek.c.item_id, err.c.status == "error"))
        .distinct()
        .subquery()
    )
    blocked = conn.execute(
        select(work_items.c.channel, func.count(), func.min(work_items.c.created_at))
        .join(behind, behind.c.item_id == work_items.c.id)
        .group_by(work_items.c.channel)
    ).all()
    held = conn.execute(
        select(work_items.c.channel, func.count(), func.min(work_items.c.created_at))
        .where(work_items.c.status == "held")
        .group_by(work_items.c.channel)
    ).all()
    out: dict[str, Waiting] = {}
    for ch, n, oldest in blocked:
        out[ch] = Waiting(blocked=n, oldest_blocked=_aware(oldest))
    for ch, n, oldest in held:
        w = out.get(ch, Waiting())
        out[ch] = Waiting(w.blocked, n, w.oldest_blocked, _aware(oldest))
    return out


def _aware(ts) -> datetime | None:
    """SQLite gives naive UTC datetimes (and MIN() of one as text)."""
    if ts is None:
        return None
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
