"""Pausing channels and destinations, and the endpoints engine processes bound.

The rows are the truth every process shares (:mod:`interface.store.channel_schema`): the console,
the CLI and the API write ``channel_controls``; each engine process reads it about once a second
(:class:`interface.engine.controls.Controls`) and publishes what it bound to
``channel_listeners``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from interface.store.channel_schema import channel_controls, channel_listeners

INTAKE = ""  # the destination column of a channel's intake pause
LISTENER_STALE_SECONDS = 60.0  # a process that has not refreshed its rows for this long is gone


@dataclass(frozen=True)
class Paused:
    channel: str
    destination: str  # "" : intake
    paused_by: str
    paused_at: datetime
    reason: str | None


def _aware(ts):
    if ts is None:
        return None
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def pause(
    conn: Connection, channel: str, destination: str, user: str, now: datetime, reason: str | None = None
) -> bool:
    """Pause a channel's intake (``destination`` ``""``) or a destination's queue; False if it
    already was."""
    key = (channel_controls.c.channel == channel) & (channel_controls.c.destination == destination)
    if conn.execute(select(channel_controls.c.channel).where(key)).first() is not None:
        return False
    conn.execute(
        insert(channel_controls).values(
            channel=channel, destination=destination, paused_by=user, paused_at=now, reason=reason
        )
    )
    return True


def resume(conn: Connection, channel: str, destination: str) -> bool:
    """Resume it; False if it was not paused."""
    key = (channel_controls.c.channel == channel) & (channel_controls.c.destination == destination)
    return conn.execute(delete(channel_controls).where(key)).rowcount > 0


def paused(conn: Connection) -> list[Paused]:
    rows = conn.execute(select(channel_controls).order_by(channel_controls.c.channel)).all()
    return [Paused(r.channel, r.destination, r.paused_by, _aware(r.paused_at), r.reason) for r in rows]


@dataclass(frozen=True)
class Listener:
    channel: str
    process: str
    endpoint: str
    host: str | None
    port: int | None
    connections: int
    paused: bool
    started_at: datetime
    seen_at: datetime


def publish(conn: Connection, process: str, rows: list[dict], now: datetime) -> None:
    """Replace this process's listener rows (``rows``: channel, endpoint, host, port,
    connections, paused, started_at)."""
    conn.execute(delete(channel_listeners).where(channel_listeners.c.process == process))
    if rows:
        conn.execute(insert(channel_listeners), [{**r, "process": process, "seen_at": now} for r in rows])


def touch(conn: Connection, process: str, counts: dict[str, tuple[int, bool]], now: datetime) -> int:
    """Refresh this process's rows: connections and paused per channel; returns rows updated."""
    n = 0
    for channel, (connections, is_paused) in counts.items():
        n += conn.execute(
            update(channel_listeners)
            .where(channel_listeners.c.process == process, channel_listeners.c.channel == channel)
            .values(connections=connections, paused=int(is_paused), seen_at=now)
        ).rowcount
    return n


def withdraw(conn: Connection, process: str) -> None:
    conn.execute(delete(channel_listeners).where(channel_listeners.c.process == process))


def listeners(conn: Connection, now: datetime, stale: float = LISTENER_STALE_SECONDS) -> list[Listener]:
    """The listeners of every process seen in the last ``stale`` seconds (older rows are a
    process that died without withdrawing them), by channel."""
    cutoff = now - timedelta(seconds=stale)
    rows = conn.execute(
        select(channel_listeners)
        .where(channel_listeners.c.seen_at >= cutoff)
        .order_by(channel_listeners.c.channel, channel_listeners.c.process)
    ).all()
    return [
        Listener(
            r.channel,
            r.process,
            r.endpoint,
            r.host,
            r.port,
            r.connections or 0,
            bool(r.paused),
            _aware(r.started_at),
            _aware(r.seen_at),
        )
        for r in rows
    ]


def prune_listeners(conn: Connection, now: datetime, stale: float = LISTENER_STALE_SECONDS * 10) -> int:
    return conn.execute(
        delete(channel_listeners).where(channel_listeners.c.seen_at < now - timedelta(seconds=stale))
    ).rowcount
