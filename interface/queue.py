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
import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, exists, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from . import fastsql
from .schema import audit, messages, work_attempts, work_items, work_keys

OUT_PREFIX = "out:"  # keys of outbound lanes (interface.destinations)
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
    k = aliased(work_keys)
    k2 = aliased(work_keys)
    earlier = (select(k.c.item_id).join(k2, and_(k2.c.key == k.c.key, k2.c.item_id < k.c.item_id))
               .where(k.c.item_id == work_items.c.id))
    return ~exists(earlier)


@functools.lru_cache(maxsize=256)
def _runnable_query(n_ids: int, outbound: bool | None, lane: bool, pg_lock: bool) -> fastsql.Statement:
    """The runnable-items SELECT for one shape, built and compiled once (the worker runs it every
    round, the journal writer once per group commit). ``n_ids``: the number of ``b_id<i>``
    parameters of its ``id IN (...)`` (0: no id filter) — one bind each rather than an expanding
    IN, so that it runs through ``fastsql``."""
    q = (select(work_items.c.id, work_items.c.message_id, work_items.c.channel,
                work_items.c.destination, work_items.c.key, work_items.c.status,
                work_items.c.attempts, work_items.c.created_at)
         .where(work_items.c.status.in_([bindparam(f"b_status{i}", v) for i, v in enumerate(RUNNABLE)]),
                work_items.c.next_attempt_at <= bindparam("b_now"),
                _head_condition())
         .order_by(work_items.c.id).limit(bindparam("b_limit")))
    if n_ids:
        q = q.where(work_items.c.id.in_(fastsql.in_binds("b_id", n_ids)))
    if outbound is not None:
        out = work_items.c.key.startswith(OUT_PREFIX, autoescape=True)
        q = q.where(out if outbound else ~out)
    if lane:
        q = q.where(work_items.c.key.like(bindparam("b_lane"), escape="/"))
    if pg_lock:
        q = q.with_for_update(skip_locked=True, of=work_items)
    return fastsql.Statement(q)


def runnable(conn: Connection, now: datetime, limit: int = 64, *, lock: bool = False,
             ids: list[int] | None = None, outbound: bool | None = None,
             lane: str | None = None) -> list:
    """Items that may run now, oldest first, at most one per key. ``lock`` (PostgreSQL):
    claim them with FOR UPDATE SKIP LOCKED for the rest of the transaction.

    ``outbound``: False = store lanes only (the store worker), True = outbound lanes only
    (``out:`` keys, see ``interface.destinations``); ``lane``: only keys with this prefix."""
    pg_lock = lock and conn.dialect.name == "postgresql"
    params: dict = {"b_now": now, "b_limit": limit}
    if lane is not None:
        params["b_lane"] = lane.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
    if ids is None:
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
    from . import cluster

    pg = conn.dialect.name == "postgresql"
    if not pg and not cluster.TRACE_PATH:
        return rows
    keys: dict[int, set[str]] = {r.id: {r.key} for r in rows}
    for item_id, key in conn.execute(select(work_keys.c.item_id, work_keys.c.key)
                                     .where(work_keys.c.item_id.in_(list(keys)))):
        keys[item_id].add(key)
    if pg:
        got = lock_keys(conn, set().union(*keys.values()))
        rows = [r for r in rows if keys[r.id] <= got]
    if cluster.TRACE_PATH:
        cluster.trace_claims(conn, rows, keys)
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
    ``INTERFACE_CLAIM_TRACE`` test hook of ``interface.cluster``; nothing when it is unset)."""
    from . import cluster

    if cluster.TRACE_PATH:
        cluster.trace_claims(conn, items, keys)


def lock_keys(conn: Connection, keys) -> set[str]:
    """PostgreSQL: take the transaction-scoped advisory lock of each ordering key that no other
    transaction holds; returns the keys now held. SQLite: all of them (BEGIN IMMEDIATE already
    serialises every writer)."""
    if conn.dialect.name != "postgresql":
        return set(keys)
    got = conn.execute(text(
        "SELECT k, pg_try_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k"),
        {"keys": sorted(keys)}).all()
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
    return fastsql.Statement(select(work_keys.c.key).distinct()
                             .where(work_keys.c.key.in_(fastsql.in_binds("b_key", n))))


# Built once, executed with parameters: rebuilding them with ``.values(literals)`` per item cost
# more CPU than the SQL itself (see docs/benchmarks.md).
# The hot ones run through ``fastsql`` (compiled once per dialect, executed on the cursor).
_DELETE_KEYS = delete(work_keys).where(work_keys.c.item_id == bindparam("b_item"))
_UPDATE_ITEM = update(work_items).where(work_items.c.id == bindparam("b_item"))
_INSERT_ATTEMPT = insert(work_attempts)
_ITEM_STATUSES = select(work_items.c.status).where(work_items.c.message_id == bindparam("b_msg"))
_UPDATE_MESSAGE_STATUS = update(messages).where(messages.c.id == bindparam("b_msg"),
                                                messages.c.status != "rejected",
                                                messages.c.status != "quarantined")
_RELEASE_HELD = (update(work_items)
                 .where(work_items.c.status == "held", work_items.c.key == bindparam("b_key"))
                 .values(next_attempt_at=bindparam("b_now")))
_F_DELETE_KEYS = fastsql.Statement(_DELETE_KEYS)
_F_UPDATE_ITEM = fastsql.Statement(_UPDATE_ITEM, keyed=True)
_F_INSERT_ATTEMPT = fastsql.Statement(_INSERT_ATTEMPT, keyed=True)
_F_ITEM_STATUSES = fastsql.Statement(_ITEM_STATUSES)
_F_UPDATE_MESSAGE_STATUS = fastsql.Statement(_UPDATE_MESSAGE_STATUS, keyed=True)
_F_RELEASE_HELD = fastsql.Statement(_RELEASE_HELD)


def mark_done(conn: Connection, item_id: int, message_id: int, now: datetime, attempts: int) -> None:
    _mark_done(conn, [(item_id, message_id, attempts)], now)


def mark_retry(conn: Connection, item_id: int, now: datetime, attempts: int, delay: float,
               error: str, reason: str) -> None:
    """Transient failure: try again later; keeps its keys (the patient waits, in order)."""
    conn.execute(update(work_items).where(work_items.c.id == item_id).values(
        status="pending", attempts=attempts, next_attempt_at=now + timedelta(seconds=delay),
        updated_at=now, last_error=error[:4000], reason=reason))
    conn.execute(insert(work_attempts).values(item_id=item_id, at=now, outcome="retry", error=error[:4000]))


def mark_error(conn: Connection, item_id: int, message_id: int, now: datetime, attempts: int,
               error: str, reason: str, location: str | None) -> None:
    """Into the error queue. Keeps its keys: later messages for this patient wait behind it."""
    conn.execute(update(work_items).where(work_items.c.id == item_id).values(
        status="error", attempts=attempts, updated_at=now, last_error=error[:4000], reason=reason,
        error_location=location))
    conn.execute(insert(work_attempts).values(item_id=item_id, at=now, outcome="error", error=error[:4000]))
    _refresh_message_status(conn, message_id)


def mark_held(conn: Connection, item_id: int, now: datetime, attempts: int, recheck: float,
              error: str, reason: str) -> None:
    """Parked (e.g. unknown patient): gives its keys up so it blocks nobody, retried later."""
    conn.execute(delete(work_keys).where(work_keys.c.item_id == item_id))
    conn.execute(update(work_items).where(work_items.c.id == item_id).values(
        status="held", attempts=attempts, next_attempt_at=now + timedelta(seconds=recheck),
        updated_at=now, last_error=error[:4000], reason=reason))
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
    fastsql.run_many(conn, _F_UPDATE_ITEM, [
        {"b_item": item, "status": "done", "attempts": attempts, "updated_at": now, "reason": None}
        for item, _, attempts in done])
    fastsql.run_many(conn, _F_INSERT_ATTEMPT, [
        {"item_id": item, "at": now, "outcome": "done", "error": None} for item, _, _ in done])
    message_ids = sorted({mid for _, mid, _ in done})
    if len(message_ids) == 1:
        _refresh_message_status(conn, message_ids[0])
        return
    statuses: dict[int, set[str]] = {m: set() for m in message_ids}
    for mid, status in conn.execute(_MESSAGE_ITEM_STATUSES, {"b_msgs": message_ids}):
        statuses[mid].add(status)
    updates = [{"b_msg": mid, "status": status} for mid, st in statuses.items()
               if (status := _message_status(st)) is not None]
    if updates:
        fastsql.run_many(conn, _F_UPDATE_MESSAGE_STATUS, updates)


_MESSAGE_ITEM_STATUSES = select(work_items.c.message_id, work_items.c.status).where(
    work_items.c.message_id.in_(bindparam("b_msgs", expanding=True)))


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


class ActionError(Exception):
    """A clerk action that cannot be done as asked (unknown item, wrong state, empty reason)."""


def _audit(conn, now, user, action, item_id, reason=None, detail=None):
    conn.execute(insert(audit).values(at=now, user=user, action=action, target_type="work_item",
                                      target_id=str(item_id), reason=reason, detail=detail))


def _item(conn, item_id: int):
    row = conn.execute(select(work_items).where(work_items.c.id == item_id)).first()
    if row is None:
        raise ActionError(f"no work item {item_id}")
    return row


def retry_item(conn: Connection, item_id: int, *, user: str, now: datetime, reason: str | None = None,
               detail: str | None = None) -> None:
    """Put an error (or held) item back in the queue now; it keeps its place for its key."""
    row = _item(conn, item_id)
    if row.status not in ("error", "held"):
        raise ActionError(f"item {item_id} is {row.status}; only error or held items can be retried")
    if row.destination == "quarantine":
        raise ActionError("a quarantined duplicate cannot be retried as is; resubmit or discard it")
    if row.destination in ("rejected", "batch"):
        raise ActionError("a message refused at receipt cannot be retried as is; resubmit a corrected "
                          "copy (or the same one, if the channel now takes it) or discard it")
    conn.execute(update(work_items).where(work_items.c.id == item_id)
                 .values(status="pending", next_attempt_at=now, updated_at=now))
    have = conn.execute(select(func.count()).select_from(work_keys).where(work_keys.c.item_id == item_id)).scalar()
    if not have:
        conn.execute(insert(work_keys).values(item_id=item_id, key=row.key))
    conn.execute(update(messages).where(messages.c.id == row.message_id, messages.c.status == "error")
                 .values(status="accepted"))
    _audit(conn, now, user, "retry", item_id, reason=reason, detail=detail)


def discard_item(conn: Connection, item_id: int, *, user: str, reason: str, now: datetime,
                 detail: str | None = None) -> None:
    """Give up on an item, with a reason; its patient's later messages flow again."""
    if not reason or not reason.strip():
        raise ActionError("a reason is required to discard")
    row = _item(conn, item_id)
    if row.status in ("done", "discarded"):
        raise ActionError(f"item {item_id} is already {row.status}")
    conn.execute(delete(work_keys).where(work_keys.c.item_id == item_id))
    conn.execute(update(work_items).where(work_items.c.id == item_id)
                 .values(status="discarded", updated_at=now))
    conn.execute(insert(work_attempts).values(item_id=item_id, at=now, outcome="discarded", error=reason[:4000]))
    rows = conn.execute(select(work_items.c.status).where(work_items.c.message_id == row.message_id)).all()
    if all(r.status in ("done", "discarded") for r in rows):
        conn.execute(update(messages).where(messages.c.id == row.message_id).values(
            status="discarded" if all(r.status == "discarded" for r in rows) else "processed"))
    _audit(conn, now, user, "discard", item_id, reason=reason, detail=detail)


def resubmit_item(conn: Connection, item_id: int, raw: bytes, *, user: str, now: datetime,
                  reason: str | None = None, channels=None) -> int:
    """Fix-and-resend: store the edited copy as a new message linked to the original
    (``parent_id``) and point the failed work item at it, so it keeps its place in its patient's
    order (later messages for the patient still wait behind it). The original is kept unchanged,
    marked ``resubmitted``. Returns the new message id. An item of a message refused at receipt
    (rejected, quarantined, a batch's count) has no place to keep: its copy goes through the
    engine's checks again (``interface.readmit``; ``channels`` is the loaded configuration)."""
    row = _item(conn, item_id)
    if row.status not in ("error", "held"):
        raise ActionError(f"item {item_id} is {row.status}; only error or held items can be resubmitted")
    from .readmit import RECEIPT_DESTINATIONS, ReadmitError, readmit

    if row.destination in RECEIPT_DESTINATIONS:
        try:
            return readmit(conn, row, raw, channels=channels, user=user, now=now, reason=reason)
        except ReadmitError as exc:
            raise ActionError(str(exc)) from None
    orig = conn.execute(select(messages).where(messages.c.id == row.message_id)).first()
    from .errors import ParseError
    from .message import decode, header_from_text

    try:
        header = header_from_text(decode(raw).text)
    except ParseError as exc:
        raise ActionError(f"the edited message cannot be read: {exc}") from None
    new_id = conn.execute(insert(messages).values(
        channel=orig.channel, received_at=now, peer="resubmit", raw=raw,
        body_sha256=hashlib.sha256(raw).hexdigest(), status="accepted", ack=None, ack_code=None,
        dedup_key=None, sending_application=header.sending_application[:227],
        sending_facility=header.sending_facility[:227],
        receiving_application=header.receiving_application[:227],
        receiving_facility=header.receiving_facility[:227], control_id=header.control_id[:199],
        message_type=header.message_type[:32], structure=header.structure[:16],
        version=header.version[:16], message_time=header.message_time[:32],
        patient_id=orig.patient_id, parent_id=orig.id).returning(messages.c.id)).scalar_one()
    conn.execute(update(work_items).where(work_items.c.id == item_id).values(
        message_id=new_id, status="pending", next_attempt_at=now, updated_at=now, attempts=0))
    have = conn.execute(select(func.count()).select_from(work_keys).where(work_keys.c.item_id == item_id)).scalar()
    if not have:
        conn.execute(insert(work_keys).values(item_id=item_id, key=row.key))
    conn.execute(insert(work_attempts).values(item_id=item_id, at=now, outcome="resubmitted",
                                              error=f"message {orig.id} replaced by edited message {new_id}"))
    conn.execute(update(messages).where(messages.c.id == orig.id).values(status="resubmitted"))
    _audit(conn, now, user, "resubmit", item_id, reason=reason,
           detail=f"original message {orig.id}, edited message {new_id}")
    return new_id


# ---------------------------------------------------------------------------------------------
# bulk clerk actions and reprocessing

BULK_MAX = 1000


@dataclass
class BulkResult:
    action: str
    succeeded: list[int]
    failed: list[tuple[int, str]]  # (item id, why it could not take the action)
    truncated: bool = False  # a filter matched more than the cap: run it again for the rest


def filter_items(q, *, status=None, channel: str | None = None, reason: str | None = None,
                 destination: str | None = None, max_id: int | None = None):
    """The clerk's work-item filter on a select over ``work_items`` (shared by bulk actions,
    ``interface errors`` and the API): each given condition narrows it; blanks are ignored."""
    if status is not None:  # an empty list matches nothing, as asked
        q = q.where(work_items.c.status.in_(list(status)))
    if channel:
        q = q.where(work_items.c.channel == channel)
    if reason:
        q = q.where(work_items.c.reason == reason)
    if destination:
        q = q.where(work_items.c.destination == destination)
    if max_id is not None:
        q = q.where(work_items.c.id <= max_id)
    return q


def select_items(conn: Connection, *, channel: str | None = None, reason: str | None = None,
                 destination: str | None = None, status: tuple[str, ...] = ("error",),
                 max_id: int | None = None, limit: int = BULK_MAX) -> tuple[list[int], bool]:
    """Ids of the items a filter matches now, oldest first, at most ``limit``; and whether
    there were more. ``max_id``: only items up to the newest one the clerk saw."""
    q = filter_items(select(work_items.c.id), status=status, channel=channel, reason=reason,
                     destination=destination, max_id=max_id)
    ids = list(conn.scalars(q.order_by(work_items.c.id).limit(limit + 1)))
    return ids[:limit], len(ids) > limit


def bulk_action(db, action: str, *, user: str, reason: str, now: datetime, ids: list[int] | None = None,
                where: dict | None = None) -> BulkResult:
    """Retry or discard exactly the items named in ``ids``, or every item ``where``
    (``select_items`` arguments: channel, reason, destination, status, max_id) matches now.
    A reason is required (it is the audit's why). Each item is acted on in its own transaction
    and audited with who, when, why and the bulk it was part of; items that cannot take the
    action (unknown, already done...) are reported in ``failed`` and the others still done."""
    if action not in ("retry", "discard"):
        raise ActionError(f"unknown bulk action {action!r}")
    if (ids is None) == (where is None):
        raise ActionError("give either a list of item ids or a filter")
    if not reason or not reason.strip():
        raise ActionError(f"a reason is required to {action} in bulk")
    reason = reason.strip()
    truncated = False
    if ids is not None:
        targets = list(dict.fromkeys(int(i) for i in ids))
        detail = f"bulk {action} of {len(targets)} listed item(s)"
    else:
        with db.connect() as conn:
            targets, truncated = select_items(conn, **where)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(where.items()) if v)
        detail = f"bulk {action} of {len(targets)} item(s) matching {shown or 'all'}"
    result = BulkResult(action, [], [], truncated)
    for item_id in targets:
        try:
            with db.begin() as conn:
                if action == "retry":
                    retry_item(conn, item_id, user=user, now=now, reason=reason, detail=detail)
                else:
                    discard_item(conn, item_id, user=user, reason=reason, now=now, detail=detail)
            result.succeeded.append(item_id)
        except ActionError as exc:
            result.failed.append((item_id, str(exc)))
    return result


def reprocess_message(conn: Connection, message_id: int, destination: str, *, channels, user: str,
                      now: datetime, reason: str | None = None) -> int:
    """Queue a stored message again to one destination of its channel (``channels``: the loaded
    Channel list or a name -> Channel dict). The new work item goes to the end of the message's
    key(s) in that destination's lane, like a new arrival; earlier items of the same message are
    untouched. Refused while the message still has an unfinished item for that destination.
    Returns the new work item id."""
    from . import destinations as dests
    from .engine import Engine
    from .errors import ParseError
    from .message import decode, header_from_text

    by_name = channels if isinstance(channels, dict) else {c.name: c for c in channels}
    msg = conn.execute(select(messages).where(messages.c.id == message_id)).first()
    if msg is None:
        raise ActionError(f"no message {message_id}")
    if msg.status in ("rejected", "quarantined"):
        raise ActionError(f"message {message_id} is {msg.status}; resubmit a corrected copy instead")
    ch = by_name.get(msg.channel)
    if ch is None:
        raise ActionError(f"channel {msg.channel} is not configured")
    dest = dests.destination_for(ch, destination)
    if dest is None or destination == dests.APPLICATION_ACK:
        names = ", ".join(d.name for d in ch.destinations)
        raise ActionError(f"channel {ch.name} has no destination {destination!r} (it has: {names})")
    busy = conn.execute(select(work_items.c.id).where(
        work_items.c.message_id == message_id, work_items.c.destination == destination,
        work_items.c.status.in_(UNFINISHED))).first()
    if busy is not None:
        raise ActionError(f"message {message_id} is already queued to {destination} (item {busy.id})")
    try:
        header = header_from_text(decode(msg.raw).text)
    except ParseError as exc:
        raise ActionError(f"message {message_id} cannot be read: {exc}") from None
    patient_keys, _ = Engine(None).ordering_keys(ch, header, decode(msg.raw).text)
    keys = dests.lane_keys(ch.name, dest, dests.base_keys(ch, patient_keys, header))
    item_id = conn.execute(insert(work_items).values(
        message_id=message_id, channel=ch.name, destination=destination, key=keys[0], status="pending",
        attempts=0, next_attempt_at=now, created_at=now, updated_at=now).returning(work_items.c.id)).scalar_one()
    conn.execute(insert(work_keys), [{"item_id": item_id, "key": k} for k in dict.fromkeys(keys)])
    conn.execute(insert(work_attempts).values(item_id=item_id, at=now, outcome="reprocess",
                                              error=f"message {message_id} queued again to {destination}"))
    conn.execute(insert(audit).values(at=now, user=user, action="reprocess", target_type="message",
                                      target_id=str(message_id), reason=reason,
                                      detail=f"destination {destination}, work item {item_id}"))
    return item_id
