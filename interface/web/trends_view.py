"""The trends table the dashboard and the channel page show (and ``trends.js`` draws with uPlot):
per minute over the last hour (every minute, zeros included), per minute over 24 hours, or per
hour over 30 days (those two: the minutes and hours that had traffic)."""

from __future__ import annotations

from datetime import datetime, timedelta

from interface.store import channel_stats

WINDOWS = {
    "hour": ("m", timedelta(hours=1), "Last hour, per minute"),
    "day": ("m", timedelta(hours=24), "Last 24 hours, per minute"),
    "month": ("h", timedelta(days=30), "Last 30 days, per hour"),
}


def _ms(v: float | None) -> str:
    return "" if v is None else (f"{v:.0f}" if v >= 10 else f"{v:.1f}")


def trend(
    conn, now: datetime, *, window: str = "hour", channel: str | None = None, destination: str | None = ""
) -> dict:
    if window not in WINDOWS:
        window = "hour"
    period, span, title = WINDOWS[window]
    first = (channel_stats.minute_of if period == "m" else channel_stats.hour_of)(now - span)
    if period == "m" and window == "hour":
        first += timedelta(minutes=1)
    points = {
        p.start: p
        for p in channel_stats.series(conn, period, first, channel=channel, destination=destination)
    }
    if window == "hour":  # every minute, so the graph and the table show the quiet ones too
        starts = [first + timedelta(minutes=i) for i in range(60)]
    else:
        starts = sorted(points)
    rows, totals = [], channel_stats.Point(first)
    for start in starts:
        p = points.get(start) or channel_stats.Point(start)
        for c in (*channel_stats.COUNTS, "latency_count", "latency_sum_ms"):
            setattr(totals, c, getattr(totals, c) + getattr(p, c))
        totals.buckets = [a + b for a, b in zip(totals.buckets, p.buckets)]
        rows.append(
            {
                "start": start,
                "ts": int(start.timestamp()),
                "received": p.received,
                "accepted": p.accepted,
                "rejected": p.rejected,
                "errored": p.errored,
                "p50": _ms(p.p(0.5)),
                "p95": _ms(p.p(0.95)),
                "p99": _ms(p.p(0.99)),
            }
        )
    return {
        "window": window,
        "title": title,
        "windows": [(k, v[2]) for k, v in WINDOWS.items()],
        "rows": rows,
        "totals": {
            **{c: getattr(totals, c) for c in channel_stats.COUNTS},
            "p50": _ms(totals.p(0.5)),
            "p95": _ms(totals.p(0.95)),
            "p99": _ms(totals.p(0.99)),
        },
        "latency_label": "ACK latency" if destination == "" else "delivery latency",
    }
