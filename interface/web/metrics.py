"""``GET /metrics``: Prometheus text, read at scrape time.

A per-app ``CollectorRegistry`` with one custom collector: the runtime counters of the engine
running in this process (per channel) and the work-item queue from the database (per channel and
destination). Labels are channel and destination names only: never patient data.

Metrics:

* ``interface_messages_received_total``, ``..._accepted_total``, ``..._rejected_total``,
  ``..._duplicates_total``, ``..._quarantined_total`` {channel} (since this process started)
* ``interface_connections`` {channel}, ``interface_channel_listening`` {channel}
* ``interface_work_items`` {channel, destination, state=queued|in_progress|errored|held}
* ``interface_work_items_processed_total``, ``interface_work_items_discarded_total`` {channel, destination}
* ``interface_work_oldest_pending_age_seconds`` {channel, destination}
* ``interface_database_up`` (0 when the queue could not be read)
* ``interface_alerts_firing`` {rule} (alerts firing now, when this process runs the alert checks)
* ``interface_trend_messages_last_hour`` {channel, destination, outcome=received|accepted|rejected|errored}
  and ``interface_trend_latency_seconds_last_hour`` {channel, destination, quantile=0.5|0.95|0.99}:
  the trends table's figures (the graphs of the dashboard and the channel page), from every
  engine process sharing the database
"""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from interface.store import channel_stats
from interface.web.api.channels import _cache, queue_stats, runtime_counters

log = logging.getLogger("interface.web.metrics")

router = APIRouter()


class InterfaceCollector:
    def __init__(self, app):
        self.app = app

    def describe(self):
        return []  # collected lazily at scrape time

    def collect(self):
        state = self.app.state
        now = state.clock()
        configured = [c.name for c in (state.channels or [])]
        runtime = state.runtime
        if runtime is not None:
            fams = {
                k: CounterMetricFamily(
                    f"interface_messages_{k}", f"Messages {k} since start", labels=["channel"]
                )
                for k in ("received", "accepted", "rejected", "duplicates", "quarantined")
            }
            conns = GaugeMetricFamily("interface_connections", "Open MLLP connections", labels=["channel"])
            listening = GaugeMetricFamily(
                "interface_channel_listening", "1 when the listener is up", labels=["channel"]
            )
            for name in configured:
                s = runtime.channel_state(name)
                counts = runtime_counters(s["counters"])
                for k, fam in fams.items():
                    fam.add_metric([name], counts[k])
                conns.add_metric([name], s["connections"])
                listening.add_metric([name], 1 if s["listening"] else 0)
            yield from fams.values()
            yield conns
            yield listening
            evaluator = getattr(runtime, "alerts", None)
            if evaluator is not None:
                firing = GaugeMetricFamily("interface_alerts_firing", "Alerts firing now", labels=["rule"])
                for rule, n in sorted(evaluator.firing_counts().items()):
                    firing.add_metric([rule], n)
                yield firing
        up = GaugeMetricFamily("interface_database_up", "1 when the database answered this scrape")
        try:
            with state.reader.connect() as conn:
                stats = queue_stats(conn, now, _cache(self.app))
        except SQLAlchemyError as exc:
            log.warning("metrics: queue not readable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        items = GaugeMetricFamily(
            "interface_work_items",
            "Unfinished work items by state",
            labels=["channel", "destination", "state"],
        )
        processed = CounterMetricFamily(
            "interface_work_items_processed", "Work items done", labels=["channel", "destination"]
        )
        discarded = CounterMetricFamily(
            "interface_work_items_discarded", "Work items discarded", labels=["channel", "destination"]
        )
        age = GaugeMetricFamily(
            "interface_work_oldest_pending_age_seconds",
            "Age of the oldest pending or held item (0 when none)",
            labels=["channel", "destination"],
        )
        for (ch, dest), s in sorted(stats.items()):
            for st in ("queued", "in_progress", "errored", "held"):
                items.add_metric([ch, dest, st], s[st])
            processed.add_metric([ch, dest], s["processed"])
            discarded.add_metric([ch, dest], s["discarded"])
            age.add_metric([ch, dest], s["oldest_pending_age_seconds"] or 0.0)
        yield items
        yield processed
        yield discarded
        yield age
        yield from self.trends(now)

    def trends(self, now):
        """The trends table's figures (the dashboard's graphs) over the last hour, every process."""
        try:
            with self.app.state.reader.connect() as conn:
                totals = channel_stats.totals(conn, channel_stats.minute_of(now) - timedelta(minutes=59))
        except SQLAlchemyError as exc:
            log.warning("metrics: trends not readable: %s", type(exc).__name__)
            return
        counts = GaugeMetricFamily(
            "interface_trend_messages_last_hour",
            'Messages in the last hour by outcome (destination "" is the intake)',
            labels=["channel", "destination", "outcome"],
        )
        latency = GaugeMetricFamily(
            "interface_trend_latency_seconds_last_hour",
            "Latency percentiles in the last hour (intake: frame to ACK; destination: receipt to delivery)",
            labels=["channel", "destination", "quantile"],
        )
        for (ch, dest), pt in sorted(totals.items()):
            for outcome in channel_stats.COUNTS:
                counts.add_metric([ch, dest, outcome], getattr(pt, outcome))
            for q in (0.5, 0.95, 0.99):
                v = pt.p(q)
                if v is not None:
                    latency.add_metric([ch, dest, str(q)], v / 1000.0)
        yield counts
        yield latency


def make_registry(app) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(InterfaceCollector(app))
    return registry


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
