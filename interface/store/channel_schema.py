"""Tables the channels console runs on, shared by every process on one database.

* ``channel_controls``: what an analyst paused — a channel's intake (``destination`` ``""``)
  or one destination's queue — with who and when. A row exists while it is paused; resuming
  deletes it. Every engine process reads the (tiny) table about once a second
  (:class:`interface.engine.controls.Controls`).
* ``channel_listeners``: the endpoint each engine process actually bound for each channel
  (``--listen`` overrides and ``tcp:0`` included) and its open connections, refreshed every few
  seconds (``seen_at``), so that the console shows it even when it runs in another process.
* ``channel_stats``: per channel (``destination`` ``""``: intake) and destination, counts and an
  ACK (intake) or delivery (destination) latency histogram per minute (``period`` ``m``, kept
  24 hours) and per hour (``h``, kept 30 days): see :mod:`interface.store.channel_stats`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from interface.store.schema import TS, metadata

# Upper bounds (milliseconds) of the latency histogram's buckets; the last one is open.
LATENCY_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
N_BUCKETS = len(LATENCY_BOUNDS_MS) + 1

channel_controls = Table(
    "channel_controls",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("destination", String(64), primary_key=True),  # "" : the channel's intake
    Column("paused_by", String(128), nullable=False),
    Column("paused_at", TS, nullable=False),
    Column("reason", String(500)),
)

channel_listeners = Table(
    "channel_listeners",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("process", String(128), primary_key=True),  # host:pid
    Column("endpoint", String(500), nullable=False),  # the endpoint string bound
    Column("host", String(128)),
    Column("port", Integer),
    Column("connections", Integer, nullable=False, default=0),
    Column("paused", Integer, nullable=False, default=0),  # 1: this process refuses intake now
    Column("started_at", TS, nullable=False),
    Column("seen_at", TS, nullable=False),
)

channel_stats = Table(
    "channel_stats",
    metadata,
    Column("period", String(1), primary_key=True),  # m | h
    Column("start", TS, primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("destination", String(64), primary_key=True),
    Column("received", Integer, nullable=False, default=0),
    Column("accepted", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("errored", Integer, nullable=False, default=0),
    Column("latency_count", Integer, nullable=False, default=0),
    Column("latency_sum_ms", BigInteger, nullable=False, default=0),
    *(Column(f"b{i}", Integer, nullable=False, default=0) for i in range(N_BUCKETS)),
)
Index("ix_channel_stats_channel", channel_stats.c.channel, channel_stats.c.period, channel_stats.c.start)
