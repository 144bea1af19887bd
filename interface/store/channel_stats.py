"""Trends: per channel and destination, messages received, accepted, rejected and errored, and
a latency histogram, per minute (kept 24 hours) and per hour (kept 30 days).

Written cheaply: the engine counts in memory (:class:`Recorder`, a dict update under a lock per
message) and a thread flushes what it counted every few seconds (:func:`flush`): per
(channel, destination, minute) one ``UPDATE ... SET n = n + :n`` of the minute row and one of
the hour row (an INSERT the first time), so several processes add to the same rows safely. The
table stays small: 1,440 minute rows and 720 hour rows per channel and destination at most,
:func:`prune` (run by the flusher hourly and by ``interface db prune``) deletes the older ones.

Intake rows (``destination`` ``""``): received (every message of a frame), accepted (stored and
queued or applied, and duplicates answered with their stored ACK), rejected (AR / quarantined),
errored (AE: not stored, an error at receipt); latency: from the frame read to its ACK written.
Destination rows: accepted (delivered or applied), errored (to the error queue); latency: from
the message's receipt to its delivery.

Percentiles come from the histogram (:func:`percentile`: linear inside the bucket, as
Prometheus' ``histogram_quantile`` does), so minutes add up to hours and channels to a total
exactly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from interface.store.channel_schema import LATENCY_BOUNDS_MS, N_BUCKETS, channel_stats

COUNTS = ("received", "accepted", "rejected", "errored")
MINUTE_KEEP = timedelta(hours=24)
HOUR_KEEP = timedelta(days=30)
_COLUMNS = (*COUNTS, "latency_count", "latency_sum_ms", *(f"b{i}" for i in range(N_BUCKETS)))
_WIDTH = len(_COLUMNS)

# how an engine outcome status counts
INTAKE_STATUS = {
    "accepted": "accepted",
    "processed": "accepted",
    "duplicate": "accepted",
    "rejected": "rejected",
    "quarantined": "rejected",
    "error": "errored",
}


def bucket_of(ms: float) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms <= bound:
            return i
    return N_BUCKETS - 1


def minute_of(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(second=0, microsecond=0)


def hour_of(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


class Recorder:
    """In-memory counts per (channel, destination, minute) until the next :func:`flush`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._data: dict[tuple[str, str, datetime], list[int]] = {}

    def _add(
        self, channel: str, destination: str, now: datetime, count: str | None, ms: float | None
    ) -> None:
        key = (channel, destination, minute_of(now))
        with self._lock:
            row = self._data.get(key)
            if row is None:
                row = self._data[key] = [0] * _WIDTH
            if count is not None:
                row[0] += 1
                row[COUNTS.index(count)] += 1
            if ms is not None:
                row[4] += 1
                row[5] += int(ms)
                row[6 + bucket_of(ms)] += 1

    def intake(self, channel: str, status: str, now: datetime) -> None:
        """One message received (``status``: the engine's outcome status)."""
        self._add(channel, "", now, INTAKE_STATUS.get(status, "errored"), None)

    def ack_latency(self, channel: str, now: datetime, seconds: float) -> None:
        """One ACK written ``seconds`` after its frame was read."""
        self._add(channel, "", now, None, seconds * 1000.0)

    def delivery(
        self, channel: str, destination: str, ok: bool, now: datetime, seconds: float | None
    ) -> None:
        """One work item finished: done (``ok``) or to the error queue."""
        self._add(
            channel,
            destination,
            now,
            "accepted" if ok else "errored",
            None if seconds is None else seconds * 1000.0,
        )

    def take(self) -> dict[tuple[str, str, datetime], list[int]]:
        with self._lock:
            data, self._data = self._data, {}
        return data

    def put_back(self, data: dict[tuple[str, str, datetime], list[int]]) -> None:
        """A flush failed (database down): keep the counts for the next one."""
        with self._lock:
            for key, row in data.items():
                mine = self._data.setdefault(key, [0] * _WIDTH)
                for i, v in enumerate(row):
                    mine[i] += v


def _add_row(
    conn: Connection, period: str, start: datetime, channel: str, destination: str, row: list[int]
) -> None:
    key = and_(
        channel_stats.c.period == period,
        channel_stats.c.start == start,
        channel_stats.c.channel == channel,
        channel_stats.c.destination == destination,
    )
    values = {c: channel_stats.c[c] + v for c, v in zip(_COLUMNS, row) if v}
    if not values:
        return
    if conn.execute(update(channel_stats).where(key).values(**values)).rowcount:
        return
    sp = conn.begin_nested()
    try:
        conn.execute(
            insert(channel_stats).values(
                period=period,
                start=start,
                channel=channel,
                destination=destination,
                **dict(zip(_COLUMNS, row)),
            )
        )
        sp.commit()
    except IntegrityError:  # another process inserted it meanwhile: add to theirs
        sp.rollback()
        conn.execute(update(channel_stats).where(key).values(**values))


def flush(conn: Connection, data: dict[tuple[str, str, datetime], list[int]]) -> int:
    """Add the counted minutes to their minute and hour rows; returns the keys written."""
    hours: dict[tuple[str, str, datetime], list[int]] = {}
    for (channel, destination, minute), row in sorted(data.items(), key=lambda kv: kv[0]):
        _add_row(conn, "m", minute, channel, destination, row)
        h = hours.setdefault((channel, destination, hour_of(minute)), [0] * _WIDTH)
        for i, v in enumerate(row):
            h[i] += v
    for (channel, destination, hour), row in sorted(hours.items(), key=lambda kv: kv[0]):
        _add_row(conn, "h", hour, channel, destination, row)
    return len(data)


def prune(conn: Connection, now: datetime) -> int:
    """Delete minute rows older than 24 hours and hour rows older than 30 days."""
    n = conn.execute(
        delete(channel_stats).where(
            channel_stats.c.period == "m", channel_stats.c.start < minute_of(now) - MINUTE_KEEP
        )
    ).rowcount
    n += conn.execute(
        delete(channel_stats).where(
            channel_stats.c.period == "h", channel_stats.c.start < hour_of(now) - HOUR_KEEP
        )
    ).rowcount
    return n


# -- reading ------------------------------------------------------------------------------------


def percentile(buckets: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) in milliseconds of a latency histogram (counts per bucket of
    ``LATENCY_BOUNDS_MS``, the last one open): linear interpolation inside the bucket the rank
    falls in; in the open bucket, its lower bound. None when empty."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    cum = 0
    for i, n in enumerate(buckets):
        if n and cum + n >= rank:
            if i >= len(LATENCY_BOUNDS_MS):
                return float(LATENCY_BOUNDS_MS[-1])
            lo = 0.0 if i == 0 else float(LATENCY_BOUNDS_MS[i - 1])
            hi = float(LATENCY_BOUNDS_MS[i])
            return lo + (hi - lo) * max(0.0, rank - cum) / n
        cum += n
    return float(LATENCY_BOUNDS_MS[-1])


@dataclass
class Point:
    start: datetime
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    errored: int = 0
    latency_count: int = 0
    latency_sum_ms: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)

    def add(self, r) -> None:
        for c in (*COUNTS, "latency_count", "latency_sum_ms"):
            setattr(self, c, getattr(self, c) + (getattr(r, c) or 0))
        for i in range(N_BUCKETS):
            self.buckets[i] += getattr(r, f"b{i}") or 0

    def p(self, q: float) -> float | None:
        return percentile(self.buckets, q)


def _aware(ts) -> datetime:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def series(
    conn: Connection,
    period: str,
    since: datetime,
    *,
    channel: str | None = None,
    destination: str | None = "",
) -> list[Point]:
    """Points per minute (``m``) or hour (``h``) from ``since``, oldest first, summed over the
    channels (``channel`` None) and/or destinations (``destination`` None; ``""``: intake only)."""
    q = select(channel_stats).where(channel_stats.c.period == period, channel_stats.c.start >= since)
    if channel is not None:
        q = q.where(channel_stats.c.channel == channel)
    if destination is not None:
        q = q.where(channel_stats.c.destination == destination)
    points: dict[datetime, Point] = {}
    for r in conn.execute(q):
        start = _aware(r.start)
        pt = points.get(start)
        if pt is None:
            pt = points[start] = Point(start)
        pt.add(r)
    return [points[k] for k in sorted(points)]


def totals(conn: Connection, since: datetime) -> dict[tuple[str, str], Point]:
    """Per (channel, destination): the sum of the minute rows since ``since`` (for /metrics)."""
    out: dict[tuple[str, str], Point] = {}
    for r in conn.execute(
        select(channel_stats).where(channel_stats.c.period == "m", channel_stats.c.start >= since)
    ):
        pt = out.get((r.channel, r.destination))
        if pt is None:
            pt = out[(r.channel, r.destination)] = Point(_aware(r.start))
        pt.add(r)
    return out
