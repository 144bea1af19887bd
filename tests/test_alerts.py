"""Alerts (alerts.yaml): each rule fires and resolves on an injected clock, cooldowns, filters,
the notifiers (a real local HTTP server, a fake SMTP server), config errors with file:line,
GET /api/alerts, and no patient data in anything sent."""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import json
import logging
import socket
import socketserver
import threading
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from interface.desk import errorqueue, users
from interface.engine.inbound import Engine
from interface.hl7.errors import ConfigError
from interface.ops import cli
from interface.ops.alert_rules import AlertConfig, build_dispatcher, load_alerts
from interface.ops.alerts import Evaluator, make_evaluator
from interface.ops.notify import Dispatcher, Webhook
from interface.store import workqueue
from interface.store.schema import events, work_items

from .conftest import Clock
from .test_web_api import channels, clock  # noqa: F401  (fixtures: the channels, a Clock at T0)

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
PATIENT = ("ZEBEDEE", "WINIFRED", "MRN778899")  # must never appear in an alert


def adt(control_id: str, mrn: str = PATIENT[2]) -> bytes:
    return (
        f"MSH|^~\\&|REG|HOSP|INTERFACE|HOSP|20261122110000||ADT^A08^ADT_A01|{control_id}|P|2.5.1\r"
        f"EVN|A08|20261122110000\r"
        f"PID|1||{mrn}^^^HOSP^MR||{PATIENT[0]}^{PATIENT[1]}||19800131|F\r"
        f"PV1|1|I|W1^101^A\r"
    ).encode()


def receive(engine, channels, clock, control_id, channel="adt") -> int:
    """Journal one message through the engine; returns its (pending) work item id."""
    ch = next(c for c in channels if c.name == channel)
    out = Engine(engine, clock=clock).receive(ch, adt(control_id))
    assert out.status == "accepted", out
    with engine.connect() as conn:
        return conn.execute(select(work_items.c.id).where(work_items.c.message_id == out.message_id)).scalar()


def fail(engine, item_id, at, reason="unknown_patient"):
    """Into the error queue, with an error text naming the patient (as real errors may)."""
    with engine.begin() as conn:
        msg = conn.execute(select(work_items.c.message_id).where(work_items.c.id == item_id)).scalar()
        workqueue.mark_error(
            conn, item_id, msg, at, 1, f"no chart for {PATIENT[0]} {PATIENT[1]} {PATIENT[2]}", reason, "PID-3"
        )


def done(engine, item_id, at):
    with engine.begin() as conn:
        msg = conn.execute(select(work_items.c.message_id).where(work_items.c.id == item_id)).scalar()
        workqueue.mark_done(conn, item_id, msg, at, 1)


def write(tmp_path, text: str, name="alerts.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def evaluator(engine, tmp_path, channels, clock, text, dispatcher=None) -> Evaluator:
    cfg = load_alerts(write(tmp_path, text), {c.name for c in channels})
    return Evaluator(
        engine,
        cfg,
        channels=channels,
        clock=clock,
        dispatcher=dispatcher or Dispatcher(),
        console_url="http://127.0.0.1:8080",
    )


def alert_events(engine):
    with engine.connect() as conn:
        return [
            (r.kind, r.channel, json.loads(r.detail))
            for r in conn.execute(
                select(events).where(events.c.kind.in_(("alert", "alert_resolved"))).order_by(events.c.id)
            )
        ]


def assert_no_patient_data(*docs):
    text = json.dumps(docs, default=str)
    for value in PATIENT:
        assert value not in text
    assert "19800131" not in text


# -- the rules ----------------------------------------------------------------------------------


def test_error_items_fire_with_counts_resolve_when_worked_and_are_recorded(engine, tmp_path, channels, clock):
    """New error items fire once with the count per reason and their ids; a check without change
    sends nothing; once every reported item is worked the alert resolves once. Both are events."""
    ev = evaluator(engine, tmp_path, channels, clock, "rules:\n  - {name: errors, type: error_items}\n")
    a, b = (receive(engine, channels, clock, f"C{i}") for i in range(2))
    clock.advance(seconds=10)
    fail(engine, a, clock.now)
    fail(engine, b, clock.now, reason="missing_field")
    clock.advance(seconds=20)
    fired = ev.evaluate()
    assert len(fired) == 1
    p = fired[0]
    assert (p["status"], p["rule"], p["type"], p["channel"]) == ("firing", "errors", "error_items", "adt")
    assert p["details"]["new_by_reason"] == {"unknown_patient": 1, "missing_field": 1}
    assert sorted(p["details"]["item_ids"]) == sorted([a, b])
    assert p["link"] == "http://127.0.0.1:8080/errors?channel=adt"
    clock.advance(seconds=30)
    assert ev.evaluate() == []
    assert [f["rule"] for f in ev.current()] == ["errors"]
    with engine.begin() as conn:
        errorqueue.discard_item(conn, a, user="clerk1", reason="test", now=clock.now)
    clock.advance(seconds=30)
    assert ev.evaluate() == []  # b is still in the error queue
    with engine.begin() as conn:
        errorqueue.retry_item(conn, b, user="clerk1", now=clock.now)
    clock.advance(seconds=30)
    resolved = ev.evaluate()
    assert [(x["status"], x["channel"]) for x in resolved] == [("resolved", "adt")]
    assert ev.current() == []
    assert [(k, ch) for k, ch, _ in alert_events(engine)] == [("alert", "adt"), ("alert_resolved", "adt")]
    assert_no_patient_data(fired, resolved, alert_events(engine))


def test_reconfigure_keeps_what_still_fires_and_takes_the_new_rules(engine, tmp_path, channels, clock):
    """A reload's new alerts.yaml (Evaluator.reconfigure): an alert of a rule kept under its name
    and type keeps firing without a second notice and still resolves; a removed rule's alert is
    dropped; a new rule and the new interval apply from the next check."""
    names = {c.name for c in channels}
    ev = evaluator(
        engine,
        tmp_path,
        channels,
        clock,
        "rules:\n  - {name: errors, type: error_items}\n  - {name: stuck, type: queue_age, minutes: 30}\n",
    )
    a = receive(engine, channels, clock, "C1")
    fail(engine, a, clock.now)
    receive(engine, channels, clock, "C2")  # stays pending
    clock.advance(minutes=31)
    assert sorted(p["rule"] for p in ev.evaluate()) == ["errors", "stuck"]
    cfg = load_alerts(
        write(
            tmp_path,
            "interval_seconds: 5\nrules:\n  - {name: errors, type: error_items}\n"
            "  - {name: stuck-10, type: queue_age, minutes: 10}\n",
        ),
        names,
    )
    ev.reconfigure(cfg, Dispatcher())
    assert [f["rule"] for f in ev.current()] == ["errors"] and ev.cfg.interval_seconds == 5
    clock.advance(seconds=30)
    assert [(p["status"], p["rule"]) for p in ev.evaluate()] == [("firing", "stuck-10")]  # errors: no repeat
    with engine.begin() as conn:
        errorqueue.discard_item(conn, a, user="clerk1", reason="test", now=clock.now)
    clock.advance(seconds=30)
    assert [(p["status"], p["rule"]) for p in ev.evaluate()] == [("resolved", "errors")]
    assert sorted(f["rule"] for f in ev.current()) == ["stuck-10"]


def test_error_items_cooldown_reports_new_errors_later_together(engine, tmp_path, channels, clock):
    """While an error_items alert fires, new errors are sent again only after cooldown_minutes,
    all together; old errors alone never repeat it."""
    ev = evaluator(
        engine,
        tmp_path,
        channels,
        clock,
        "rules:\n  - {name: errors, type: error_items, cooldown_minutes: 10}\n",
    )
    items = [receive(engine, channels, clock, f"C{i}") for i in range(4)]
    fail(engine, items[0], clock.now)
    clock.advance(seconds=30)
    assert len(ev.evaluate()) == 1
    clock.advance(minutes=1)
    fail(engine, items[1], clock.now)
    clock.advance(seconds=30)
    assert ev.evaluate() == []  # in the cooldown
    clock.advance(minutes=2)
    fail(engine, items[2], clock.now, reason="missing_field")
    clock.advance(minutes=7)
    again = ev.evaluate()  # 10.5 min after the first notification
    assert len(again) == 1 and again[0]["status"] == "firing"
    assert again[0]["details"]["new_by_reason"] == {"unknown_patient": 1, "missing_field": 1}
    assert sorted(again[0]["details"]["item_ids"]) == sorted(items[1:3])
    assert again[0]["details"]["still_in_error_queue"] == 3
    clock.advance(minutes=30)
    assert ev.evaluate() == []  # nothing new: no reminder


def test_error_items_channel_and_reason_filters(engine, tmp_path, channels, clock):
    """channels: and reasons: limit what an error_items rule sees."""
    ev = evaluator(
        engine,
        tmp_path,
        channels,
        clock,
        """
rules:
  - {name: mdm-errors, type: error_items, channels: [mdm]}
  - {name: unknown, type: error_items, reasons: [unknown_patient]}
""",
    )
    a, b = receive(engine, channels, clock, "C1"), receive(engine, channels, clock, "C2")
    fail(engine, a, clock.now, reason="missing_field")
    clock.advance(seconds=30)
    assert ev.evaluate() == []
    fail(engine, b, clock.now, reason="unknown_patient")
    clock.advance(seconds=30)
    fired = ev.evaluate()
    assert [(p["rule"], p["details"]["new_by_reason"]) for p in fired] == [
        ("unknown", {"unknown_patient": 1})
    ]


def test_queue_age_fires_past_the_limit_repeats_after_cooldown_and_resolves(
    engine, tmp_path, channels, clock
):
    """queue_age: the oldest pending/held item older than minutes fires; a reminder comes after the
    cooldown while still true; it resolves when the queue moves."""
    ev = evaluator(
        engine,
        tmp_path,
        channels,
        clock,
        "rules:\n  - {name: stuck, type: queue_age, minutes: 30, cooldown_minutes: 60}\n",
    )
    item = receive(engine, channels, clock, "C1")
    clock.advance(minutes=29)
    assert ev.evaluate() == []
    clock.advance(minutes=2)
    fired = ev.evaluate()
    assert [(p["rule"], p["channel"], p["details"]["pending"]) for p in fired] == [("stuck", "adt", 1)]
    assert fired[0]["details"]["oldest_age_minutes"] == 31.0
    clock.advance(minutes=30)
    assert ev.evaluate() == []
    clock.advance(minutes=31)
    reminder = ev.evaluate()
    assert [p["status"] for p in reminder] == ["firing"]
    assert reminder[0]["since"] == fired[0]["since"]
    done(engine, item, clock.now)
    clock.advance(seconds=30)
    assert [p["status"] for p in ev.evaluate()] == ["resolved"]


def test_no_messages_fires_for_a_quiet_channel_and_resolves_on_a_message(engine, tmp_path, channels, clock):
    """no_messages: nothing received for minutes (since start when nothing ever came) fires for the
    filtered channel only; a message resolves it."""
    ev = evaluator(
        engine,
        tmp_path,
        channels,
        clock,
        "rules:\n  - {name: quiet, type: no_messages, minutes: 60, channels: [adt]}\n",
    )
    receive(engine, channels, clock, "C1")
    clock.advance(minutes=59)
    assert ev.evaluate() == []
    clock.advance(minutes=2)
    fired = ev.evaluate()
    assert [(p["channel"], p["details"]["quiet_minutes"]) for p in fired] == [("adt", 61.0)]
    receive(engine, channels, clock, "C2")
    clock.advance(seconds=30)
    assert [(p["status"], p["channel"]) for p in ev.evaluate()] == [("resolved", "adt")]


def test_no_messages_counts_only_within_hours_in_the_channel_time_zone(engine, tmp_path, channels):
    """hours: silence counts only inside the window (channel time zone); outside it the alert
    neither starts nor resolves by itself, but a message resolves it."""
    tz_channels = [
        c.model_copy(update={"timezone": "America/New_York"}) if c.name == "adt" else c for c in channels
    ]
    clock = Clock(datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc))  # 05:00 in New York
    ev = evaluator(
        engine,
        tmp_path,
        tz_channels,
        clock,
        """
rules:
  - name: quiet-daytime
    type: no_messages
    minutes: 60
    hours: "07:00-19:00"
    channels: [adt]
""",
    )
    clock.now = datetime(2026, 11, 22, 11, 30, tzinfo=timezone.utc)  # 06:30: 90 min quiet, outside
    assert ev.evaluate() == []
    clock.now = datetime(2026, 11, 22, 12, 30, tzinfo=timezone.utc)  # 07:30: 30 min into the window
    assert ev.evaluate() == []
    clock.now = datetime(2026, 11, 22, 13, 1, tzinfo=timezone.utc)  # 08:01
    fired = ev.evaluate()
    assert [(p["channel"], p["details"]["quiet_minutes"]) for p in fired] == [("adt", 61.0)]
    clock.now = datetime(2026, 11, 23, 0, 30, tzinfo=timezone.utc)  # 19:30: outside, still quiet
    assert ev.evaluate() == []
    assert len(ev.current()) == 1
    clock.now = datetime(2026, 11, 23, 12, 30, tzinfo=timezone.utc)  # 07:30 next day: still quiet
    assert ev.evaluate() == []
    assert len(ev.current()) == 1
    receive(engine, tz_channels, clock, "C1")
    clock.advance(minutes=1)
    assert [p["status"] for p in ev.evaluate()] == ["resolved"]


def _outbound_item(engine, message_item, destination, at):
    """A work item of an outbound destination beside ``message_item``'s (same message)."""
    with engine.begin() as conn:
        src = conn.execute(select(work_items).where(work_items.c.id == message_item)).first()
        return conn.execute(
            insert(work_items).values(
                message_id=src.message_id,
                channel=src.channel,
                destination=destination,
                key=f"out:{destination}",
                status="pending",
                attempts=0,
                next_attempt_at=at,
                created_at=at,
                updated_at=at,
            )
        ).inserted_primary_key[0]


def test_downstream_down_fires_after_minutes_of_failures_and_resolves(engine, tmp_path, channels, clock):
    """downstream_down: a destination whose items fail with downstream_unavailable for minutes
    fires (per destination); delivered items resolve it; other reasons do not count."""
    ev = evaluator(
        engine,
        tmp_path,
        channels,
        clock,
        "rules:\n  - {name: lab-down, type: downstream_down, minutes: 10}\n",
    )
    base = receive(engine, channels, clock, "C1")
    out = _outbound_item(engine, base, "lab", clock.now)
    other = _outbound_item(engine, base, "billing", clock.now)
    with engine.begin() as conn:
        workqueue.mark_retry(conn, out, clock.now, 1, 5, "connection refused", "downstream_unavailable")
        workqueue.mark_retry(conn, other, clock.now, 1, 5, "AE", "downstream_refused")
    clock.advance(minutes=5)
    with engine.begin() as conn:
        workqueue.mark_retry(conn, out, clock.now, 2, 5, "connection refused", "downstream_unavailable")
    assert ev.evaluate() == []
    clock.advance(minutes=6)
    fired = ev.evaluate()
    assert [(p["channel"], p["destination"], p["details"]["failing_items"]) for p in fired] == [
        ("adt", "lab", 1)
    ]
    assert fired[0]["details"]["failing_minutes"] == 11.0
    assert ev.firing_counts() == {"lab-down": 1}
    done(engine, out, clock.now)
    clock.advance(seconds=30)
    resolved = ev.evaluate()
    assert [(p["status"], p["destination"]) for p in resolved] == [("resolved", "lab")]


def test_check_never_waits_for_the_sqlite_write_lock(engine, tmp_path, channels, clock):
    """A check reads in a read-only transaction: it completes while another transaction holds the
    write lock (on SQLite the lock is the database's only one)."""
    ev = evaluator(
        engine,
        tmp_path,
        channels,
        clock,
        """
rules:
  - {name: errors, type: error_items}
  - {name: stuck, type: queue_age, minutes: 30}
  - {name: quiet, type: no_messages, minutes: 60}
  - {name: down, type: downstream_down, minutes: 10}
""",
    )
    receive(engine, channels, clock, "C1")
    result = []
    with engine.begin() as conn:
        conn.execute(insert(events).values(at=clock.now, kind="test"))  # holds the write lock
        t = threading.Thread(target=lambda: result.append(ev.evaluate()), daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive() and result == [[]]
    ev.stop()


# -- notifiers ----------------------------------------------------------------------------------


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv = self.server
        if srv.down:
            self.send_response(503)
            self.end_headers()
            return
        srv.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def hook_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    srv.received, srv.down = [], False
    yield from _serving(srv)


def _serving(srv):
    """Serve ``srv`` in a thread for the fixture's duration, then shut it down."""
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def _webhook_config(port):
    return f"""
notifiers:
  oncall:
    type: webhook
    url: http://127.0.0.1:{port}/hook
    timeout_seconds: 5
notify: [oncall]
rules:
  - {{name: errors, type: error_items}}
"""


def test_webhook_receives_the_json_alert(engine, tmp_path, channels, clock, hook_server, caplog):
    """A webhook notifier POSTs the alert as JSON; the log notifier writes a WARNING line; neither
    carries the patient's name, MRN or the error text."""
    cfg = load_alerts(write(tmp_path, _webhook_config(hook_server.server_port)))
    ev = Evaluator(engine, cfg, channels=channels, clock=clock, dispatcher=build_dispatcher(cfg, {}))
    fail(engine, receive(engine, channels, clock, "C1"), clock.now)
    clock.advance(seconds=30)
    with caplog.at_level(logging.WARNING, logger="interface.ops.alerts"):
        ev.evaluate()
    assert len(hook_server.received) == 1
    ctype, doc = hook_server.received[0]
    assert ctype == "application/json"
    assert (doc["status"], doc["rule"], doc["channel"], doc["details"]["new_errors"]) == (
        "firing",
        "errors",
        "adt",
        1,
    )
    warnings_ = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("alert firing rule=errors channel=adt" in m for m in warnings_)
    assert_no_patient_data(doc, warnings_)


def test_webhook_down_does_not_raise_and_is_retried_next_check(
    engine, tmp_path, channels, clock, hook_server
):
    """A failing webhook (HTTP 503, or nothing listening) is logged, not raised, and the
    notification is sent again at the next check."""
    cfg = load_alerts(write(tmp_path, _webhook_config(hook_server.server_port)))
    ev = Evaluator(engine, cfg, channels=channels, clock=clock, dispatcher=build_dispatcher(cfg, {}))
    hook_server.down = True
    fail(engine, receive(engine, channels, clock, "C1"), clock.now)
    clock.advance(seconds=30)
    assert len(ev.evaluate()) == 1
    assert hook_server.received == [] and len(ev.dispatcher.pending) == 1
    hook_server.down = False
    clock.advance(seconds=30)
    assert ev.evaluate() == []
    assert [d["status"] for _, d in hook_server.received] == ["firing"] and ev.dispatcher.pending == []

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    d = Dispatcher({"dead": Webhook("dead", f"http://127.0.0.1:{dead}/", timeout=2)})
    d.deliver({"status": "firing", "rule": "r", "channel": "adt", "summary": "s"}, ["log", "dead"])
    assert len(d.pending) == 1
    d.retry()
    assert len(d.pending) == 1 and d.pending[0].attempts == 2


class _FakeSMTP(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO, optional AUTH PLAIN, MAIL, RCPT, DATA, QUIT."""

    def handle(self):
        srv = self.server
        self.wfile.write(b"220 fake ESMTP\r\n")
        mail = {"rcpt": [], "auth": None}
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode().strip()
            up = cmd.upper()
            if up.startswith("EHLO"):
                self.wfile.write(b"250-fake\r\n250 AUTH PLAIN\r\n")
            elif up.startswith("AUTH PLAIN"):
                import base64

                mail["auth"] = base64.b64decode(cmd.split()[2]).split(b"\0")[1:]
                self.wfile.write(b"235 ok\r\n")
            elif up.startswith("MAIL FROM"):
                mail["from"] = cmd[10:]
                self.wfile.write(b"250 ok\r\n")
            elif up.startswith("RCPT TO"):
                mail["rcpt"].append(cmd[8:])
                self.wfile.write(b"250 ok\r\n")
            elif up == "DATA":
                self.wfile.write(b"354 go\r\n")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk)
                mail["data"] = b"".join(data).decode()
                srv.mails.append(mail)
                self.wfile.write(b"250 queued\r\n")
            elif up == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server():
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _FakeSMTP)
    srv.daemon_threads = True
    srv.mails = []
    yield from _serving(srv)


def test_email_is_sent_over_smtp_with_login_from_the_environment(
    engine, tmp_path, channels, clock, smtp_server
):
    """An email notifier sends one message per alert (firing, then resolved) to every address,
    logging in with credentials from the named environment variables; no patient data in it."""
    path = write(
        tmp_path,
        f"""
notifiers:
  him:
    type: email
    host: 127.0.0.1
    port: {smtp_server.server_address[1]}
    from: interface@example.org
    to: [him@example.org, oncall@example.org]
    username_env: ALERT_SMTP_USER
    password_env: ALERT_SMTP_PASSWORD
rules:
  - {{name: errors, type: error_items, notify: [him]}}
""",
    )
    with pytest.raises(ConfigError, match="ALERT_SMTP_PASSWORD is not set"):
        make_evaluator(engine, path, channels=channels, clock=clock, environ={"ALERT_SMTP_USER": "u"})
    ev = make_evaluator(
        engine,
        path,
        channels=channels,
        clock=clock,
        environ={"ALERT_SMTP_USER": "alerts", "ALERT_SMTP_PASSWORD": "s3cret"},
    )
    item = receive(engine, channels, clock, "C1")
    fail(engine, item, clock.now)
    clock.advance(seconds=30)
    ev.evaluate()
    with engine.begin() as conn:
        errorqueue.discard_item(conn, item, user="clerk1", reason="test", now=clock.now)
    clock.advance(seconds=30)
    ev.evaluate()
    assert len(smtp_server.mails) == 2
    first, second = smtp_server.mails
    assert first["auth"] == [b"alerts", b"s3cret"]
    assert first["from"] == "<interface@example.org>"
    assert first["rcpt"] == ["<him@example.org>", "<oncall@example.org>"]
    subjects = [
        email.parser.Parser(policy=email.policy.default).parsestr(m["data"])["Subject"]
        for m in (first, second)
    ]
    assert subjects == [
        "[interface] FIRING: adt: 1 new error item(s) (unknown_patient: 1)",
        "[interface] RESOLVED: adt: 1 new error item(s) (unknown_patient: 1)",
    ]
    assert_no_patient_data(first["data"], second["data"])


def test_alert_from_an_error_item_carries_no_patient_data(
    engine, tmp_path, channels, clock, hook_server, smtp_server, caplog
):
    """Every notification built from an error item whose message and error text carry the
    patient's name and MRN (webhook JSON, e-mail, log line, the event row) leaves them out."""
    cfg = load_alerts(
        write(
            tmp_path,
            f"""
notifiers:
  hook: {{type: webhook, url: "http://127.0.0.1:{hook_server.server_port}/"}}
  mail: {{type: email, host: 127.0.0.1, port: {smtp_server.server_address[1]}, from: a@example.org, to: [b@example.org]}}
notify: [hook, mail]
rules:
  - {{name: errors, type: error_items}}
  - {{name: stuck, type: queue_age, minutes: 1}}
""",
        )
    )
    ev = Evaluator(
        engine,
        cfg,
        channels=channels,
        clock=clock,
        dispatcher=build_dispatcher(cfg, {}),
        console_url="http://127.0.0.1:8080",
    )
    fail(engine, receive(engine, channels, clock, "C1"), clock.now)
    receive(engine, channels, clock, "C2")
    with engine.connect() as conn:  # the data is really there
        assert PATIENT[0] in conn.execute(select(work_items.c.last_error)).scalars().first()
    clock.advance(minutes=2)
    with caplog.at_level(logging.INFO, logger="interface.ops.alerts"):
        fired = ev.evaluate()
    assert {p["rule"] for p in fired} == {"errors", "stuck"}
    assert len(hook_server.received) == 2 and len(smtp_server.mails) == 2
    assert_no_patient_data(
        fired,
        hook_server.received,
        [m["data"] for m in smtp_server.mails],
        [r.getMessage() for r in caplog.records],
        alert_events(engine),
    )


# -- configuration ----------------------------------------------------------------------------

BAD = """interval_seconds: 30
notifiers:
  hook:
    type: webhook
    url: ftp://example.org/
notify: [hook, pager]
rules:
  - name: errors
    type: error_items
    reasons: [no_such_reason]
  - name: stuck
    type: queue_age
    minutes: -5
  - name: quiet
    type: no_messages
    hours: "7-19"
    channels: [adt, nosuch]
  - name: odd
    type: weather
  - name: errors
    type: downstream_down
    colour: red
"""


def test_config_errors_are_reported_with_file_and_line(tmp_path, channels):
    """Every problem of alerts.yaml at once, as file:line: message."""
    path = write(tmp_path, BAD)
    with pytest.raises(ConfigError) as exc:
        load_alerts(path, {c.name for c in channels})
    problems = exc.value.problems
    f = str(path)
    expect = [
        (5, "url must start with http:// or https://"),
        (6, "unknown notifier 'pager'"),
        (10, "unknown reason 'no_such_reason'"),
        (13, "minutes"),
        (16, 'expected "HH:MM-HH:MM"'),
        (17, "unknown channel 'nosuch'"),
        (19, "expected one of error_items"),
        (20, "rule name 'errors' already used"),
        (22, "unknown key 'colour'"),
    ]
    for line, text in expect:
        assert any(p.startswith(f"{f}:{line}:") and text in p for p in problems), (line, text, problems)
    assert len(problems) == len(expect)


def test_defaults_and_the_example_file_at_the_repository_root(channels):
    """The commented example alerts.yaml at the root loads, against the repository's channels."""
    cfg = load_alerts(ROOT / "alerts.yaml", {c.name for c in channels})
    assert {r.type for r in cfg.rules} == {
        "error_items",
        "queue_age",
        "no_messages",
        "downstream_down",
        "sensitive_access",
        "roi_overdue",
    }
    assert cfg.interval_seconds == 30
    assert AlertConfig().interval_seconds == 30


def test_interface_check_reports_a_bad_alerts_file(tmp_path, capsys):
    """`interface check alerts.yaml` prints file:line problems and exits 1; a good one passes."""
    path = write(tmp_path, BAD)
    assert cli.main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:22: unknown key 'colour'" in out
    good = write(tmp_path, "rules:\n  - {name: q, type: queue_age}\n", name="alerts-good.yaml")
    assert cli.main(["check", str(good)]) == 0


def test_run_loads_alerts_and_a_bad_file_stops_it(engine, db_url, tmp_path, channels, clock):
    """interface run builds the evaluator from --alerts (the runtime knows it); a bad file is a
    ConfigError before anything starts; --alerts naming a missing file is an error too."""
    from interface.ops.runtime import Settings
    from interface.ops.service import make_service

    good = write(tmp_path, "rules:\n  - {name: stuck, type: queue_age, minutes: 5}\n")
    settings = Settings(
        channels_dir=ROOT / "channels",
        mappings_dir=ROOT / "mappings",
        var_dir=tmp_path,
        db_url=db_url,
        web_port=None,
        create_schema=False,
        alerts_file=good,
        rules_file=ROOT / "rules" / "completeness.yaml",
        port_overrides={c.name: "tcp:0:interface=127.0.0.1" for c in channels},
    )
    top, parts = make_service(settings, clock=clock)
    assert parts["runtime"].alerts is parts["alerts"]
    assert [r.name for r in parts["alerts"].cfg.rules] == ["stuck"]
    assert "alerts" in [s.name for s in top]
    settings.alerts_file = write(tmp_path, "rules:\n  - {name: x, type: nope}\n", name="bad.yaml")
    with pytest.raises(ConfigError, match="bad.yaml:2:"):
        make_service(settings, clock=clock)
    assert (
        cli.main(
            [
                "run",
                "--alerts",
                str(tmp_path / "missing.yaml"),
                "--no-web",
                "--channels",
                str(ROOT / "channels"),
                "--var",
                str(tmp_path),
            ]
        )
        == 1
    )


# -- GET /api/alerts --------------------------------------------------------------------------


def _token(engine, name, role):
    with engine.begin() as conn:
        users.add_user(conn, name, role, "correct horse battery", now=T0)
        return users.new_token(conn, name, now=T0)


@pytest.fixture
def fast_hashing(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


def test_api_alerts_roles_and_content(engine, tmp_path, channels, clock, fast_hashing):
    """GET /api/alerts: analysts and admins see what fires and the alert events; clerks are
    refused, anonymous callers must log in; /metrics has interface_alerts_firing{rule}."""
    from interface.ops.runtime import Runtime
    from interface.web.app import create_app

    ev = evaluator(
        engine,
        tmp_path,
        channels,
        clock,
        """
rules:
  - {name: errors, type: error_items}
  - {name: stuck, type: queue_age, minutes: 30}
""",
    )
    item = receive(engine, channels, clock, "C1")
    fail(engine, item, clock.now)
    clock.advance(seconds=30)
    ev.evaluate()
    runtime = Runtime()
    runtime.alerts = ev
    tok = {role: _token(engine, role + "1", role) for role in ("analyst", "admin", "clerk")}
    with TestClient(create_app(engine, channels=channels, runtime=runtime, clock=clock)) as client:
        assert client.get("/api/alerts").status_code == 401
        assert (
            client.get("/api/alerts", headers={"Authorization": f"Bearer {tok['clerk']}"}).status_code == 403
        )
        for role in ("analyst", "admin"):
            r = client.get("/api/alerts", headers={"Authorization": f"Bearer {tok[role]}"})
            assert r.status_code == 200
        doc = r.json()
        assert doc["evaluating"] is True and doc["rules"] == ["errors", "stuck"]
        assert [(f["rule"], f["channel"], f["details"]["new_errors"]) for f in doc["firing"]] == [
            ("errors", "adt", 1)
        ]
        assert [(e["kind"], e["rule"], e["status"]) for e in doc["events"]] == [("alert", "errors", "firing")]
        metrics = client.get("/metrics").text
        assert 'interface_alerts_firing{rule="errors"} 1.0' in metrics
        assert 'interface_alerts_firing{rule="stuck"} 0.0' in metrics
        ev_rows = client.get("/api/events?kind=alert", headers={"Authorization": f"Bearer {tok['analyst']}"})
        assert [e["kind"] for e in ev_rows.json()["events"]] == ["alert"]
    with engine.begin() as conn:
        errorqueue.discard_item(conn, item, user="clerk1", reason="test", now=clock.now)
    clock.advance(seconds=30)
    ev.evaluate()
    # the console on its own (interface web): what fires is read back from the events
    with TestClient(create_app(engine, channels=channels, clock=clock)) as client:
        doc = client.get("/api/alerts", headers={"Authorization": f"Bearer {tok['analyst']}"}).json()
        assert doc["evaluating"] is False and doc["firing"] == []
        assert [e["kind"] for e in doc["events"]] == ["alert_resolved", "alert"]
    with engine.begin() as conn:  # an alert that fired and never resolved (engine stopped)
        conn.execute(
            insert(events).values(
                at=clock.now,
                kind="alert",
                channel="mdm",
                detail=json.dumps(
                    {
                        "status": "firing",
                        "rule": "quiet",
                        "type": "no_messages",
                        "channel": "mdm",
                        "summary": "s",
                        "details": {"quiet_minutes": 61},
                    }
                ),
            )
        )
    with TestClient(create_app(engine, channels=channels, clock=clock)) as client:
        doc = client.get("/api/alerts", headers={"Authorization": f"Bearer {tok['analyst']}"}).json()
        assert [(f["rule"], f["channel"]) for f in doc["firing"]] == [("quiet", "mdm")]
    assert_no_patient_data(doc)


def test_hours_windows_including_one_over_midnight():
    """hours: "07:00-19:00" and "22:00-06:00" (over midnight): when the current window opened."""
    from datetime import time as dtime

    from interface.ops.alert_rules import parse_hours
    from interface.ops.alerts import _window_start

    tz = timezone.utc
    day = parse_hours("07:00-19:00")
    night = parse_hours("22:00-06:00")
    at = lambda h, m=0: datetime(2026, 11, 22, h, m, tzinfo=tz)  # noqa: E731
    assert _window_start(at(6, 59), *day) is None
    assert _window_start(at(7), *day) == at(7)
    assert _window_start(at(19), *day) is None
    assert _window_start(at(23), *night) == at(22)
    assert _window_start(at(5, 30), *night) == datetime(2026, 11, 21, 22, 0, tzinfo=tz)
    assert _window_start(at(12), *night) is None
    assert parse_hours("00:00-24:00")[1] > dtime(23, 59)
    for bad in ("7-19", "25:00-26:00", "07:00-07:00", "07:60-08:00"):
        with pytest.raises(ValueError):
            parse_hours(bad)
