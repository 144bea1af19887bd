"""The channels console (issue 19, sections 1, 2, 5) without a network: pausing and resuming
a channel's intake and a destination's queue, retrying a destination, the trends table (rollup,
pruning, percentiles) with an injected clock, the API and pages, events in words."""

from __future__ import annotations

import warnings
from datetime import timedelta

import pytest
from sqlalchemy import func, select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from interface.desk import channel_actions
from interface.engine.controls import Controls, paused_outcome
from interface.store import channel_controls, channel_stats, workqueue
from interface.store.channel_schema import LATENCY_BOUNDS_MS, N_BUCKETS
from interface.store.channel_schema import channel_stats as stats_table
from interface.store.schema import work_items
from interface.web import event_words
from interface.web.app import create_app
from tests.test_adt_events import Harness
from tests.test_web_api import NOW, adt, audit_rows, h, make_user

from .conftest import Clock

# -- percentiles --------------------------------------------------------------------------------


def _hist(**by_bound) -> list[int]:
    b = [0] * N_BUCKETS
    for bound, n in by_bound.items():
        b[LATENCY_BOUNDS_MS.index(int(bound[1:]))] = n
    return b


def test_percentile_interpolates_inside_the_bucket():
    assert channel_stats.percentile([0] * N_BUCKETS, 0.5) is None
    # 100 ACKs all between 5 and 10 ms: the median is halfway, the 99th near the top
    b = _hist(b10=100)
    assert channel_stats.percentile(b, 0.5) == pytest.approx(7.5)
    assert channel_stats.percentile(b, 0.99) == pytest.approx(9.95)
    # 90 fast (<= 1 ms) and 10 slow (500..1000 ms): p50 is fast, p95 half way through the slow bucket
    b = _hist(b1=90, b1000=10)
    assert channel_stats.percentile(b, 0.5) == pytest.approx(50 / 90)
    assert channel_stats.percentile(b, 0.95) == pytest.approx(750.0)
    # past the last bound: its lower bound (the open bucket says "at least")
    b = [0] * N_BUCKETS
    b[-1] = 3
    assert channel_stats.percentile(b, 0.5) == float(LATENCY_BOUNDS_MS[-1])


def test_bucket_bounds_are_inclusive():
    assert channel_stats.bucket_of(0.2) == 0
    assert channel_stats.bucket_of(1.0) == 0
    assert channel_stats.bucket_of(1.01) == 1
    assert channel_stats.bucket_of(10**6) == N_BUCKETS - 1


# -- the trends table ---------------------------------------------------------------------------


def test_counts_roll_up_into_minutes_and_hours_and_are_pruned(engine):
    clock = Clock(NOW)
    rec = channel_stats.Recorder()
    rec.intake("adt", "accepted", clock())
    rec.intake("adt", "processed", clock())
    rec.intake("adt", "rejected", clock())
    rec.ack_latency("adt", clock(), 0.004)
    rec.ack_latency("adt", clock(), 0.006)
    rec.delivery("adt", "store", True, clock(), 0.2)
    rec.delivery("adt", "store", False, clock(), None)
    with engine.begin() as conn:
        channel_stats.flush(conn, rec.take())
    assert rec.take() == {}
    clock.advance(seconds=90)  # the next minute, same hour
    rec.intake("adt", "error", clock())
    with engine.begin() as conn:
        channel_stats.flush(conn, rec.take())
    # a second process adds to the same minute (the UPDATE path, not a second row)
    other = channel_stats.Recorder()
    other.intake("adt", "accepted", clock())
    with engine.begin() as conn:
        channel_stats.flush(conn, other.take())

    with engine.connect() as conn:
        minutes = channel_stats.series(conn, "m", NOW - timedelta(hours=1), channel="adt")
        hours = channel_stats.series(conn, "h", NOW - timedelta(days=1), channel="adt")
        dest = channel_stats.series(conn, "m", NOW - timedelta(hours=1), channel="adt", destination="store")
    assert [(p.received, p.accepted, p.rejected, p.errored) for p in minutes] == [(3, 2, 1, 0), (2, 1, 0, 1)]
    assert minutes[0].p(0.5) == pytest.approx(5.0)  # one ACK in 2..5 ms, one in 5..10 ms
    assert [(p.received, p.accepted, p.errored) for p in hours] == [(5, 3, 1)]
    assert [(p.accepted, p.errored, p.latency_count) for p in dest] == [(1, 1, 1)]

    with engine.begin() as conn:  # 23 hours later: nothing pruned yet
        assert channel_stats.prune(conn, NOW + timedelta(hours=23)) == 0
    with engine.begin() as conn:  # past 24 h: the minutes go, the hours stay for 30 days
        assert channel_stats.prune(conn, NOW + timedelta(hours=25)) == 3
    with engine.connect() as conn:
        assert {r.period for r in conn.execute(select(stats_table))} == {"h"}
    with engine.begin() as conn:
        assert channel_stats.prune(conn, NOW + timedelta(days=31)) == 2
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(stats_table)).scalar() == 0


def test_a_failed_flush_keeps_the_counts():
    rec = channel_stats.Recorder()
    rec.intake("adt", "accepted", NOW)
    data = rec.take()
    rec.intake("adt", "accepted", NOW)
    rec.put_back(data)
    (row,) = rec.take().values()
    assert row[0] == 2 and row[1] == 2


# -- pausing ------------------------------------------------------------------------------------


def test_a_paused_intake_answers_ae_with_the_reason_and_stores_nothing(engine):
    hs = Harness(engine)
    ch = hs.channels["adt"]
    out = paused_outcome(ch, adt("P1", "100001"), NOW)
    assert out is not None and out.ack_code == "AE" and out.status == "paused"
    text = out.ack.decode()
    assert "MSA|AE|P1" in text and "paused" in text and "207" in text
    # enhanced mode: CE; and a sender that asked for no accept ACK (MSH-15 NE) gets none
    msh, rest = adt("P2", "100001").split(b"\r", 1)
    enhanced = paused_outcome(ch, msh + b"|||AL|NE\r" + rest, NOW)
    assert enhanced is not None and enhanced.ack_code == "CE"
    assert paused_outcome(ch, msh + b"|||NE|NE\r" + rest, NOW) is None


def test_controls_follow_the_table(engine):
    c = Controls()
    assert not c.intake_paused("adt")
    assert channel_actions.set_paused(engine, "adt", None, True, user="ana", now=NOW, reason="vendor upgrade")
    assert not channel_actions.set_paused(engine, "adt", None, True, user="ana", now=NOW)  # already
    assert channel_actions.set_paused(engine, "adt", "store", True, user="ana", now=NOW)
    assert c.refresh_from(engine)
    assert c.intake_paused("adt") and c.destination_paused("adt", "store")
    assert not c.refresh_from(engine)  # nothing changed
    assert channel_actions.set_paused(engine, "adt", None, False, user="ana", now=NOW)
    assert c.refresh_from(engine) and not c.intake_paused("adt")
    actions = [r["action"] for r in audit_rows(engine, target_type="channel")]
    assert actions == ["pause_intake", "pause_destination", "resume_intake"]
    from interface.store import audit as store_audit

    with engine.connect() as conn:  # written into the hash chain like every other entry
        verdict = store_audit.verify(conn)
    assert verdict.ok and verdict.checked == 3 and verdict.before_chain == 0


def test_workers_skip_a_paused_destination_and_retry_all_brings_errors_back(engine):
    hs = Harness(engine)
    for i in range(3):
        assert hs.send(adt(f"D{i}", f"10000{i}", trigger="A04")).status == "accepted"
    controls = Controls()
    hs.worker.controls = controls
    channel_actions.set_paused(engine, "adt", "store", True, user="ana", now=NOW)
    controls.refresh_from(engine)
    assert hs.worker.run_once() == 0  # paused: nothing claimed
    with engine.connect() as conn:
        assert workqueue.runnable(conn, hs.clock(), 10, outbound=False)  # they are runnable...
        assert not workqueue.runnable(conn, hs.clock(), 10, outbound=False, exclude=controls.destinations)
        assert not workqueue.runnable(
            conn, hs.clock(), 10, ids=[1, 2, 3], outbound=False, exclude=controls.destinations
        )
    channel_actions.set_paused(engine, "adt", "store", False, user="ana", now=NOW)
    controls.refresh_from(engine)
    hs.drain()
    assert [i.status for i in hs.items()] == ["done"] * 3

    # two items in error: retry all of the destination puts them back, each audited
    for i in range(2):
        out = hs.send(adt(f"E{i}", f"20000{i}", trigger="A04"))
        item = next(it for it in hs.items() if it.message_id == out.message_id)
        with engine.begin() as conn:
            workqueue.mark_error(conn, item.id, out.message_id, NOW, 1, "boom", "processing_error", None)
    r = channel_actions.retry_destination(engine, "adt", "store", user="ana", now=hs.clock())
    assert len(r.retried) == 2 and not r.failed
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(work_items.c.status == "error")).scalar() == 0
    hs.drain()
    assert all(i.status == "done" for i in hs.items())
    assert [a["action"] for a in audit_rows(engine, target_type="channel")][-1] == "retry_destination"
    assert sum(1 for a in audit_rows(engine, action="retry")) == 2


# -- API and pages ------------------------------------------------------------------------------


@pytest.fixture
def console(engine):
    hs = Harness(engine)
    app = create_app(engine, channels=list(hs.channels.values()), clock=hs.clock)
    with TestClient(app) as c:
        yield hs, app, c


def test_api_pause_is_for_analysts_and_admins_and_shows_everywhere(console, engine):
    hs, app, c = console
    analyst, clerk = make_user(engine, "ana", "analyst"), make_user(engine, "cleo", "clerk")
    assert c.post("/api/channels/adt/pause", headers=h(clerk)).status_code == 403
    assert c.post("/api/channels/nope/pause", headers=h(analyst)).status_code == 404
    r = c.post("/api/channels/adt/pause", headers=h(analyst), json={"reason": "downtime"})
    assert r.status_code == 200 and r.json()["changed"] is True, r.text
    state = {s["name"]: s for s in c.get("/api/channels", headers=h(clerk)).json()["channels"]}
    assert state["adt"]["intake_paused"] is True and state["adt"]["paused_by"] == "ana"
    assert state["mdm"]["intake_paused"] is False
    r = c.post("/api/channels/adt/destinations/store/pause", headers=h(analyst))
    assert r.status_code == 200
    assert c.post("/api/channels/adt/destinations/nope/pause", headers=h(analyst)).status_code == 404
    (dest,) = c.get("/api/channels/adt", headers=h(clerk)).json()["channel"]["destinations"]
    assert dest["name"] == "store" and dest["paused"] is True
    assert c.post("/api/channels/adt/resume", headers=h(analyst)).json()["changed"] is True
    assert c.post("/api/channels/adt/destinations/store/resume", headers=h(analyst)).json()["changed"] is True
    r = c.post("/api/channels/adt/destinations/store/retry", headers=h(analyst))
    assert r.status_code == 200 and r.json()["retried"] == []
    r = c.post("/api/reload", headers=h(analyst))  # no engine in this process: says so
    assert r.status_code == 200 and r.json()["requested"] is False
    assert [a["user"] for a in audit_rows(engine, target_type="channel")] == ["ana"] * 5


def test_channel_detail_shows_the_configuration_with_file_and_line(console, engine):
    hs, app, c = console
    tok = make_user(engine, "ana", "analyst")
    body = c.get("/api/channels/adt", headers=h(tok)).json()
    assert body["file"].endswith("channels/adt.yaml")
    by_key = {e["key"]: e for e in body["config"]}
    lines = (hs.channels["adt"]._source.file, hs.channels["adt"]._source.line(("listen",)))
    assert by_key["listen"]["value"] == "tcp:2575:interface=127.0.0.1"
    assert (by_key["listen"]["file"], by_key["listen"]["line"]) == lines
    text = open(lines[0]).read().splitlines()
    assert text[by_key["listen"]["line"] - 1].startswith("listen:")
    assert by_key["order_by"]["file"] is None  # a default, not written in the file
    assert c.get("/api/channels/nope", headers=h(tok)).status_code == 404
    page = c.get("/channels/adt", headers=h(tok))
    assert page.status_code == 200
    assert f"{body['file']}:{by_key['listen']['line']}" in page.text
    assert "Pause intake" in page.text and "Retry all of store" in page.text


def test_pages_act_and_clerks_see_no_buttons(console, engine):
    hs, app, c = console
    analyst, clerk = make_user(engine, "ana", "analyst"), make_user(engine, "cleo", "clerk")
    r = c.post("/channels/adt/pause", headers=h(analyst), data={"reason": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/channels/adt?done=")
    page = c.get("/channels/adt", headers=h(clerk)).text
    assert "Paused</strong> by ana" in page and "Pause intake" not in page and "Resume intake" not in page
    assert c.post("/channels/adt/resume", headers=h(clerk)).status_code == 403
    listing = c.get("/channels", headers=h(clerk)).text
    assert 'data-channel="adt" data-paused="yes"' in listing
    r = c.post("/channels/adt/destinations/store/pause", headers=h(analyst), follow_redirects=False)
    assert r.status_code == 303
    assert 'data-destination="store" data-paused="yes"' in c.get("/channels/adt", headers=h(analyst)).text
    assert c.post("/channels/adt/destinations/store/explode", headers=h(analyst)).status_code == 404


def test_stats_api_page_and_metrics_carry_the_same_figures(console, engine):
    hs, app, c = console
    tok = make_user(engine, "ana", "analyst")
    rec = channel_stats.Recorder()
    for _ in range(4):
        rec.intake("adt", "accepted", hs.clock())
        rec.ack_latency("adt", hs.clock(), 0.008)
    rec.intake("adt", "rejected", hs.clock())
    with engine.begin() as conn:
        channel_stats.flush(conn, rec.take())
    body = c.get("/api/stats", headers=h(tok), params={"channel": "adt"}).json()
    (p,) = body["points"]
    assert (p["received"], p["accepted"], p["rejected"], p["errored"]) == (5, 4, 1, 0)
    assert 5 <= p["p50_ms"] <= 10
    assert len(c.get("/api/stats", headers=h(tok), params={"period": "hour"}).json()["points"]) == 1
    page = c.get("/", headers=h(tok)).text
    assert 'table class="trend"' in page and "5 received, 4 accepted, 1 rejected" in page
    assert "5 received" in c.get("/channels/adt", headers=h(tok)).text
    metrics = c.get("/metrics").text
    assert (
        'interface_trend_messages_last_hour{channel="adt",destination="",outcome="received"} 5.0' in metrics
    )
    assert 'interface_trend_latency_seconds_last_hour{channel="adt",destination="",quantile="0.5"}' in metrics


def test_live_endpoints_come_from_the_listeners_table(console, engine):
    hs, app, c = console
    tok = make_user(engine, "ana", "analyst")
    with engine.begin() as conn:
        channel_controls.publish(
            conn,
            "host:42",
            [
                dict(
                    channel="adt",
                    endpoint="tcp:0:interface=127.0.0.1",
                    host="127.0.0.1",
                    port=40123,
                    connections=2,
                    paused=0,
                    started_at=hs.clock(),
                )
            ],
            hs.clock(),
        )
    state = {s["name"]: s for s in c.get("/api/channels", headers=h(tok)).json()["channels"]}
    (live,) = state["adt"]["live"]
    assert live["endpoint"] == "tcp:0:interface=127.0.0.1" and live["port"] == 40123
    assert state["adt"]["listen"] == "tcp:2575:interface=127.0.0.1"  # the configured one, beside it
    assert state["adt"]["connections"] == 2 and state["adt"]["listening"] is True
    hs.advance(120)  # that process stopped refreshing its rows: gone
    state = {s["name"]: s for s in c.get("/api/channels", headers=h(tok)).json()["channels"]}
    assert state["adt"]["live"] == []


# -- events in words ----------------------------------------------------------------------------


def test_events_in_words_with_links(console, engine):
    w = event_words.describe("refused_peer", "adt", "10.0.0.9:5000", "address not in the channel allowlist")
    assert (
        w.sentence
        == "A connection from 10.0.0.9:5000 to channel adt was refused: the address is not allowed."
    )
    assert w.link == "/channels/adt"
    payload = '{"rule": "queue_age", "summary": "oldest item waits 12 min", "status": "firing", "channel": "adt", "destination": "store"}'
    w = event_words.describe("alert", "adt", None, payload)
    assert w.sentence == "Alert queue_age: oldest item waits 12 min." and "{" not in w.sentence
    assert w.link.startswith("/errors?status=error&channel=adt")
    w = event_words.describe(
        "config_rejected", None, None, "channels/adt.yaml:4: bad\nchannels/mdm.yaml:2: worse"
    )
    assert "channels/adt.yaml:4: bad (and 1 more problem)" in w.sentence
    assert (
        event_words.describe("something_new", "adt", None, None).sentence == "Something new on channel adt."
    )
    hs, app, c = console
    from interface.store import journal

    with engine.begin() as conn:
        journal.record_event(conn, at=hs.clock(), kind="alert", channel="adt", detail=payload)
    page = c.get("/", headers=h(make_user(engine, "ana", "analyst"))).text
    assert "Alert queue_age: oldest item waits 12 min." in page and "&#34;rule&#34;" not in page
    assert '"summary"' not in page


def test_the_retention_job_prunes_the_trends_too(engine):
    from interface.store import retention

    rec = channel_stats.Recorder()
    rec.intake("adt", "accepted", NOW)
    with engine.begin() as conn:
        channel_stats.flush(conn, rec.take())
    r = retention.prune(engine, older_than=timedelta(days=365), now=NOW + timedelta(days=2))
    assert r.stats == 1  # the minute row (older than 24 h); the hour row stays 30 days
    with engine.connect() as conn:
        assert [row.period for row in conn.execute(select(stats_table))] == ["h"]
