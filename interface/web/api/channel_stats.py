"""``GET /api/stats``: trends per channel and destination (:mod:`interface.store.channel_stats`):
per minute for the last 24 hours (``period=minute``) or per hour for the last 30 days
(``period=hour``), messages received, accepted, rejected, errored and the latency
percentiles (intake: frame read to ACK; a destination: receipt to delivery). The dashboard and
the channel page draw the same figures (:func:`series_for`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from interface.store import channel_stats
from interface.web.auth import ANY, ERROR_RESPONSES, UtcDateTime, clock, require

router = APIRouter(tags=["channels"])

PERIODS = {"minute": ("m", timedelta(hours=24)), "hour": ("h", timedelta(days=30))}


class StatsPoint(BaseModel):
    start: UtcDateTime
    received: int
    accepted: int
    rejected: int
    errored: int
    latency_count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class StatsSeries(BaseModel):
    period: Literal["minute", "hour"]
    channel: str | None = Field(description="None: every channel")
    destination: str | None = Field(description='"" (default): intake; a name: that destination')
    since: UtcDateTime
    points: list[StatsPoint]


def series_for(
    conn, now: datetime, period: str, channel: str | None, destination: str | None = ""
) -> tuple[datetime, list[StatsPoint]]:
    code, span = PERIODS[period]
    start = (channel_stats.minute_of if code == "m" else channel_stats.hour_of)(now - span)
    pts = channel_stats.series(conn, code, start, channel=channel, destination=destination)
    return start, [
        StatsPoint(
            start=p.start,
            received=p.received,
            accepted=p.accepted,
            rejected=p.rejected,
            errored=p.errored,
            latency_count=p.latency_count,
            p50_ms=_round(p.p(0.5)),
            p95_ms=_round(p.p(0.95)),
            p99_ms=_round(p.p(0.99)),
        )
        for p in pts
    ]


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


@router.get("/api/stats", response_model=StatsSeries, responses=ERROR_RESPONSES)
def stats(
    request: Request,
    _user=Depends(require(*ANY)),
    period: Literal["minute", "hour"] = Query("minute"),
    channel: str | None = Query(None, max_length=64),
    destination: str = Query("", max_length=64, description='"": the intake'),
) -> StatsSeries:
    """Per minute (24 h) or per hour (30 days): counts and latency percentiles; minutes with
    no traffic are left out."""
    with request.app.state.reader.connect() as conn:
        since, points = series_for(conn, clock(request), period, channel, destination)
    return StatsSeries(period=period, channel=channel, destination=destination, since=since, points=points)
