"""``GET /api/channels`` (what each channel is doing, and its queue) and ``GET /api/events``
(wire events that are not messages). ``GET /api/health`` is :mod:`interface.store.health`'s.

Live figures (listening, connections, counters since start) come from the running process's
``Runtime`` (``app.state.runtime``; None when the console runs as its own process, ``interface
web``). Queue figures come from the database, so every process sees the same ones:

* ``queued``: pending work items never attempted yet;
* ``in_progress``: pending items already attempted once or more and waiting for their retry
  (an item being applied right now is invisible to other transactions, so it counts here or in
  ``queued``);
* ``errored``, ``held``, ``processed`` (done), ``discarded``;
* ``oldest_pending_age_seconds``: age of the oldest pending or held item;

and per channel ``state`` (``ok``, ``degraded`` while items are in error, ``blocked`` behind an
item in error or ``held`` for an unknown patient, ``down`` when not listening), with the
oldest blocked and held item's age (:func:`interface.store.workqueue.waiting_by_channel`).

processed and discarded grow with the whole history, so they are recounted at most every 15 s.

:func:`queue_stats` is shared with ``/metrics``.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import case, func, select

from interface.store import workqueue
from interface.store.schema import events, work_items
from interface.web.auth import ANY, ERROR_RESPONSES, MAX_ID, UtcDateTime, clock, require

router = APIRouter(tags=["channels"])

QUEUE_FIELDS = ("queued", "in_progress", "errored", "held", "processed", "discarded")
_STATUS_FIELD = {"error": "errored", "held": "held", "done": "processed", "discarded": "discarded"}


def _aware(ts):
    if ts is None:
        return None
    if isinstance(ts, str):  # SQLite may hand back MIN() of a datetime column as text
        ts = datetime.fromisoformat(ts)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


class TerminalCountCache:
    """Done/discarded counts grow with the whole history (a scan of every finished item), so they
    are recounted at most every ``ttl`` seconds; the unfinished figures are always fresh."""

    def __init__(self, ttl: float = 15.0):
        self.ttl = ttl
        self._at = None
        self._rows: list = []
        self._lock = threading.Lock()

    def rows(self, conn) -> list:
        with self._lock:
            if self._at is not None and time.monotonic() - self._at < self.ttl:
                return self._rows
        rows = conn.execute(
            select(
                work_items.c.channel, work_items.c.destination, work_items.c.status, func.count().label("n")
            )
            .where(work_items.c.status.in_(("done", "discarded")))
            .group_by(work_items.c.channel, work_items.c.destination, work_items.c.status)
        ).all()
        with self._lock:
            self._rows, self._at = rows, time.monotonic()
        return rows


def queue_stats(conn, now: datetime, cache: TerminalCountCache | None = None) -> dict[tuple[str, str], dict]:
    """{(channel, destination): {queued, in_progress, errored, held, processed, discarded,
    oldest_pending_age_seconds}}: unfinished items counted through the status index, finished
    ones (``cache``: recounted at most every few seconds)."""
    retried = case((work_items.c.attempts > 0, 1), else_=0).label("retried")
    q = (
        select(
            work_items.c.channel,
            work_items.c.destination,
            work_items.c.status,
            retried,
            func.count().label("n"),
            func.min(work_items.c.created_at).label("oldest"),
        )
        .where(work_items.c.status.in_(("pending", "held", "error")))
        .group_by(work_items.c.channel, work_items.c.destination, work_items.c.status, retried)
    )
    out: dict[tuple[str, str], dict] = {}

    def slot(r):
        return out.setdefault(
            (r.channel, r.destination), {**{f: 0 for f in QUEUE_FIELDS}, "oldest_pending_age_seconds": None}
        )

    for r in conn.execute(q):
        s = slot(r)
        if r.status == "pending":
            s["in_progress" if r.retried else "queued"] += r.n
        else:
            s[_STATUS_FIELD[r.status]] += r.n
        if r.status in ("pending", "held") and r.oldest is not None:
            age = max(0.0, (now - _aware(r.oldest)).total_seconds())
            prev = s["oldest_pending_age_seconds"]
            s["oldest_pending_age_seconds"] = age if prev is None else max(prev, age)
    for r in (cache or TerminalCountCache(0)).rows(conn):
        slot(r)[_STATUS_FIELD[r.status]] += r.n
    return out


def channel_health(*, listening: bool | None, errored: int, blocked: int, held: int) -> str:
    """``down`` (configured, this process runs it, and it is not listening), ``degraded``
    (items in error, items blocked behind one, or items held for an unknown patient) or
    ``ok``. The console's dashboard says the same."""
    if listening is False:
        return "down"
    if errored or blocked or held:
        return "degraded"
    return "ok"


def runtime_counters(counters: dict[str, int]) -> dict[str, int]:
    """Engine outcome counts -> the dashboard's names."""
    return {
        "received": counters.get("received", 0),
        "accepted": counters.get("accepted", 0) + counters.get("processed", 0),
        "rejected": counters.get("rejected", 0),
        "duplicates": counters.get("duplicate", 0),
        "quarantined": counters.get("quarantined", 0),
        "errors": counters.get("error", 0),
    }


def _cache(app) -> TerminalCountCache:
    cache = getattr(app.state, "terminal_counts", None)
    if cache is None:
        cache = app.state.terminal_counts = TerminalCountCache()
    return cache


class QueueFigures(BaseModel):
    queued: int = 0
    in_progress: int = 0
    errored: int = 0
    held: int = 0
    processed: int = 0
    discarded: int = 0
    oldest_pending_age_seconds: float | None = None


class Destination(QueueFigures):
    name: str


class Counters(BaseModel):
    received: int
    accepted: int
    rejected: int
    duplicates: int
    quarantined: int
    errors: int


class ChannelState(BaseModel):
    name: str
    configured: bool
    listen: str | None
    port: int | None
    listening: bool | None  # None: not known to this process (console running on its own)
    connections: int | None
    counters: Counters | None
    queue: QueueFigures
    destinations: list[Destination]
    state: Literal["ok", "degraded", "down"] = Field(
        description="degraded while items are in error, blocked behind one, or held; down when "
        "this process runs the channel and it is not listening"
    )
    blocked: int = Field(description="unfinished items waiting behind an item in error (same patient)")
    held: int = Field(description="items held for an unknown patient (waiting for its ADT)")
    oldest_blocked_age_seconds: float | None = None
    oldest_held_age_seconds: float | None = None


class ChannelList(BaseModel):
    channels: list[ChannelState]
    runtime: bool  # whether live figures come from the engine process itself


@router.get("/api/channels", response_model=ChannelList, responses=ERROR_RESPONSES)
def channels(request: Request, _user=Depends(require(*ANY))) -> ChannelList:
    """Each channel: live state and counters (when the engine runs in this process) and its
    queue from the database, in total and per destination."""
    now = clock(request)
    with request.app.state.reader.connect() as conn:
        stats = queue_stats(conn, now, _cache(request.app))
        waiting = workqueue.waiting_by_channel(conn)
    runtime = request.app.state.runtime
    configured = {c.name: c for c in (request.app.state.channels or [])}
    names = list(configured) + sorted(({ch for ch, _ in stats} | set(waiting)) - set(configured))
    out = []
    for name in names:
        dests = sorted((d, s) for (ch, d), s in stats.items() if ch == name)
        total = QueueFigures()
        for _d, s in dests:
            for f in QUEUE_FIELDS:
                setattr(total, f, getattr(total, f) + s[f])
            age = s["oldest_pending_age_seconds"]
            if age is not None and (
                total.oldest_pending_age_seconds is None or age > total.oldest_pending_age_seconds
            ):
                total.oldest_pending_age_seconds = age
        state = runtime.channel_state(name) if runtime is not None else None
        ch = configured.get(name)
        w = waiting.get(name, workqueue.Waiting())
        out.append(
            ChannelState(
                name=name,
                configured=ch is not None,
                listen=getattr(ch, "listen", None),
                port=state["port"] if state else None,
                listening=state["listening"] if state else None,
                connections=state["connections"] if state else None,
                counters=Counters(**runtime_counters(state["counters"])) if state else None,
                queue=total,
                destinations=[Destination(name=d, **s) for d, s in dests],
                state=channel_health(
                    listening=state["listening"] if (state and ch is not None) else None,
                    errored=total.errored,
                    blocked=w.blocked,
                    held=w.held,
                ),
                blocked=w.blocked,
                held=w.held,
                oldest_blocked_age_seconds=_age(now, w.oldest_blocked),
                oldest_held_age_seconds=_age(now, w.oldest_held),
            )
        )
    return ChannelList(channels=out, runtime=runtime is not None)


def _age(now: datetime, ts: datetime | None) -> float | None:
    return None if ts is None else max(0.0, (now - ts).total_seconds())


class Event(BaseModel):
    id: int
    at: UtcDateTime
    channel: str | None
    kind: str
    peer: str | None
    detail: str | None


class EventPage(BaseModel):
    events: list[Event]
    next_before_id: int | None


@router.get("/api/events", response_model=EventPage, responses=ERROR_RESPONSES)
def list_events(
    request: Request,
    _user=Depends(require(*ANY)),
    channel: str | None = Query(None, max_length=64),
    kind: str | None = Query(None, max_length=32),
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    limit: int = Query(100, ge=1, le=1000),
) -> EventPage:
    """Wire events that are not messages (refused peer, oversized frame, idle timeout...),
    newest first."""
    q = select(events).order_by(events.c.id.desc()).limit(limit + 1)
    if channel:
        q = q.where(events.c.channel == channel)
    if kind:
        q = q.where(events.c.kind == kind)
    if before_id is not None:
        q = q.where(events.c.id < before_id)
    with request.app.state.reader.connect() as conn:
        rows = conn.execute(q).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return EventPage(events=[Event(**r._mapping) for r in rows], next_before_id=rows[-1].id if more else None)
