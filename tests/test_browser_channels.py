"""The channels console in a real browser (issue 19): an analyst in Debian's headless Chromium
pauses a channel from its page and a real MLLP sender gets no positive ACK (AE, "paused") until
the analyst resumes it; the trends graph (uPlot) and its table change when messages arrive.

The engine is ``interface run`` in its own process on loopback (``tests.test_loopback``), the
console a separate web server on the same database, as ``interface web`` beside the engine:
the pause reaches the engine through the database. Every wait is on what the engine publishes
(its listener rows, its flushed trends), with a deadline. Screenshots: ``test-artifacts/channels-*.png``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from interface.config.channels import load_channels
from interface.desk import users
from interface.engine.client import MLLPClient, parse_ack
from interface.store import channel_controls
from interface.store.channel_schema import channel_stats
from interface.web.app import WebThread, create_app
from tests.test_browser import TIMEOUT_MS, browser, log_in, shot  # noqa: F401  (fixture)
from tests.test_loopback import ROOT, EngineProcess
from tests.test_pages import PASSWORD
from tests.test_web_api import adt, fast_hashing  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser
DEADLINE = 20.0


def until(what: str, check):
    deadline = time.monotonic() + DEADLINE
    while not (got := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling what another process published, with a deadline
    return got


@pytest.fixture
def console(engine, db_url, tmp_path, fast_hashing):  # noqa: F811
    listen = {name: "tcp:0:interface=127.0.0.1" for name in ("adt", "mdm", "siu")}
    with engine.begin() as conn:
        users.add_user(conn, "ana", "analyst", PASSWORD, now=datetime.now(timezone.utc))
    with EngineProcess(tmp_path, db_url, listen=listen) as proc:
        app = create_app(engine, channels=load_channels(ROOT / "channels"), runtime=None)
        web = WebThread(app, "127.0.0.1", 0)
        web.start()
        try:
            yield proc, f"http://127.0.0.1:{web.port}"
        finally:
            web.stop()


def listener(engine):
    with engine.connect() as conn:
        rows = [r for r in channel_controls.listeners(conn, datetime.now(timezone.utc)) if r.channel == "adt"]
    return rows[0] if rows else None


def received(engine) -> int:
    with engine.connect() as conn:
        q = select(func.coalesce(func.sum(channel_stats.c.received), 0)).where(
            channel_stats.c.period == "m", channel_stats.c.channel == "adt", channel_stats.c.destination == ""
        )
        return conn.execute(q).scalar()


def test_pause_a_channel_from_its_page_and_see_the_trend_move(console, engine, browser):  # noqa: F811
    proc, base = console
    port = proc.ports["adt"]
    until("the engine's endpoint", lambda: listener(engine))
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    log_in(page, base, "ana", "/channels/adt")

    # the endpoint actually bound (the --listen override, port 0) beside the configured one
    live = page.locator(f'#live-endpoints tr[data-port="{port}"]')
    assert "tcp:0:interface=127.0.0.1" in live.inner_text()
    assert "tcp:2575:interface=127.0.0.1" in page.locator("#intake").inner_text()
    shot(page, "channels-01-channel-page")

    # 1. pause from the page: the sender gets AE ("paused"), never AA, until resumed
    page.get_by_label("Reason (optional)").fill("vendor upgrade")
    page.get_by_role("button", name="Pause intake").click()
    page.wait_for_url(f"{base}/channels/adt?done=*")
    assert page.locator("#intake").get_attribute("data-paused") == "yes"
    assert "Paused by ana" in page.locator("#intake").inner_text()
    until("the engine to take the pause", lambda: (row := listener(engine)) is not None and row.paused)
    shot(page, "channels-02-paused")
    with MLLPClient("127.0.0.1", port, timeout=20) as sender:
        try:
            ack = sender.send_raw(adt("BR-1", "100001"))
        except OSError:
            ack = None  # the new connection was refused: no ACK at all
    assert ack is None or parse_ack(ack)[0] in ("AE", "CE"), ack

    page.get_by_role("button", name="Resume intake").click()
    page.wait_for_url(f"{base}/channels/adt?done=*")
    assert page.locator("#intake").get_attribute("data-paused") == "no"
    until("the engine to take the resume", lambda: (row := listener(engine)) is not None and not row.paused)

    # 2. the trend: the graph and its table before and after messages arrive
    page.goto(f"{base}/channels/adt")
    graphs = page.locator("#trends .trend-graphs")
    assert graphs.get_attribute("data-received") == "0"
    assert page.locator("#trends .uplot").count() == 2  # messages and latency, drawn by uPlot
    with MLLPClient("127.0.0.1", port, timeout=20) as sender:
        for i in range(5):
            assert parse_ack(sender.send_raw(adt(f"BR-T{i}", "100001")))[0] == "AA"
    until("the engine to flush its trends", lambda: received(engine) >= 5)
    page.goto(f"{base}/channels/adt")
    assert int(page.locator("#trends .trend-graphs").get_attribute("data-received")) >= 5
    first = page.locator("#trends table.trend tbody tr[data-ts]").filter(has_text="5")
    assert first.count() >= 1  # the minute's row in the table says 5 received
    assert "5 received, 5 accepted" in page.locator("#trends").inner_text()
    shot(page, "channels-03-trend")

    # the dashboard shows the same trend
    page.goto(f"{base}/")
    assert int(page.locator("#trends .trend-graphs").get_attribute("data-received")) >= 5
    assert not problems, problems
