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
from datetime import datetime, timedelta, timezone
from typing import Literal

import yaml
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import case, func, select

from interface.store import channel_controls, channel_stats, workqueue
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
    paused: bool = Field(False, description="its queue is paused: workers skip its items")


class Counters(BaseModel):
    received: int
    accepted: int
    rejected: int
    duplicates: int
    quarantined: int
    errors: int


class LiveEndpoint(BaseModel):
    """What one engine process bound for the channel (``--listen`` overrides included)."""

    process: str = Field(description="host:pid of the engine process")
    endpoint: str = Field(description="the endpoint string it bound")
    host: str | None
    port: int | None
    connections: int
    refusing: bool = Field(description="this process has taken the pause: it refuses the channel's intake")
    started_at: UtcDateTime
    seen_at: UtcDateTime


class ChannelState(BaseModel):
    name: str
    configured: bool
    listen: str | None = Field(description="the endpoint in the channel file")
    port: int | None
    live: list[LiveEndpoint] = Field(
        default_factory=list, description="the endpoints actually bound, by every engine process"
    )
    intake_paused: bool = False
    paused_by: str | None = None
    paused_at: UtcDateTime | None = None
    rate_per_minute: float | None = Field(None, description="messages received per minute, last 5 minutes")
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
    return ChannelList(channels=channel_states(request), runtime=request.app.state.runtime is not None)


def channel_states(request: Request, only: str | None = None) -> list[ChannelState]:
    """Every channel's state (or ``only`` that one): shared by the API and the pages."""
    now = clock(request)
    with request.app.state.reader.connect() as conn:
        stats = queue_stats(conn, now, _cache(request.app))
        waiting = workqueue.waiting_by_channel(conn)
        live: dict[str, list[LiveEndpoint]] = {}
        for r in channel_controls.listeners(conn, now):
            live.setdefault(r.channel, []).append(
                LiveEndpoint(
                    process=r.process,
                    endpoint=r.endpoint,
                    host=r.host,
                    port=r.port,
                    connections=r.connections,
                    refusing=r.paused,
                    started_at=r.started_at,
                    seen_at=r.seen_at,
                )
            )
        paused = {(p.channel, p.destination): p for p in channel_controls.paused(conn)}
        recent = channel_stats.totals(conn, channel_stats.minute_of(now) - timedelta(minutes=4))
    runtime = request.app.state.runtime
    configured = {c.name: c for c in (request.app.state.channels or [])}
    names = list(configured) + sorted(({ch for ch, _ in stats} | set(waiting)) - set(configured))
    if only is not None:
        names = [n for n in names if n == only]
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
        mine = live.get(name, [])
        listening = state["listening"] if state else (True if mine else None)
        connections = state["connections"] if state else (sum(e.connections for e in mine) if mine else None)
        pause = paused.get((name, channel_controls.INTAKE))
        got = recent.get((name, ""))
        configured_dests = [d.name for d in ch.destinations] if ch is not None else []
        for d in configured_dests:
            if d not in dict(dests):
                dests.append((d, {f: 0 for f in QUEUE_FIELDS} | {"oldest_pending_age_seconds": None}))
        out.append(
            ChannelState(
                name=name,
                configured=ch is not None,
                listen=getattr(ch, "listen", None),
                port=state["port"] if state else (mine[0].port if mine else None),
                live=mine,
                intake_paused=pause is not None,
                paused_by=pause.paused_by if pause else None,
                paused_at=pause.paused_at if pause else None,
                rate_per_minute=round(got.received / 5.0, 1)
                if got is not None
                else (0.0 if mine or state else None),
                listening=listening,
                connections=connections,
                counters=Counters(**runtime_counters(state["counters"])) if state else None,
                queue=total,
                destinations=[Destination(name=d, paused=(name, d) in paused, **s) for d, s in dests],
                state=channel_health(
                    listening=listening if ch is not None else None,
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
    return out


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


class ConfigEntry(BaseModel):
    key: str
    value: str = Field(description="the value as loaded (defaults included), as YAML")
    file: str | None = Field(description="the channel file it came from; None: a default")
    line: int | None


class ChannelDetail(BaseModel):
    channel: ChannelState
    file: str | None = Field(description="the channel file as loaded")
    config: list[ConfigEntry]


def config_entries(ch) -> tuple[str | None, list[ConfigEntry]]:
    """A channel's configuration as loaded: every top-level setting (defaults included), each
    with the file and line it was written at (``config.yamlfile`` keeps positions)."""
    src = getattr(ch, "_source", None)
    written = src.data if src is not None and isinstance(src.data, dict) else {}
    out = []
    for key, value in ch.model_dump(mode="json").items():
        text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True).strip()
        if text.endswith("\n..."):
            text = text[:-4].strip()
        here = key in written
        out.append(
            ConfigEntry(
                key=key,
                value=text,
                file=src.file if (src is not None and here) else None,
                line=src.line((key,)) if (src is not None and here) else None,
            )
        )
    return (src.file if src is not None else None), out


@router.get("/api/channels/{name}", response_model=ChannelDetail, responses=ERROR_RESPONSES)
def channel_detail(
    request: Request, name: str = Path(max_length=64), _user=Depends(require(*ANY))
) -> ChannelDetail:
    """One channel: its state (as in ``/api/channels``) and its configuration as loaded, setting
    by setting with the source file and line."""
    states = channel_states(request, only=name)
    if not states:
        raise HTTPException(404, "no such channel")
    ch = next((c for c in (request.app.state.channels or []) if c.name == name), None)
    file, config = config_entries(ch) if ch is not None else (None, [])
    return ChannelDetail(channel=states[0], file=file, config=config)
