"""The release-of-information outbox's retry (interface.ops.roi_outbox) with an injected clock and
a real SMTP server on 127.0.0.1: a failed e-mail goes once it is due and not before, nor twice;
two processes retrying one outbox (``interface run`` and ``interface web``) send each e-mail once;
``interface web`` (the console alone) runs the retry beside the console when ``mail.yaml`` is
there and stops it with the console, and runs none without it. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import uvicorn

from interface.desk import roi_delivery
from interface.ops import cli, roi_outbox
from interface.store import roi_delivery as outbox_store
from tests.test_roi_delivery import PUBLIC, mail_for, smtp  # noqa: F401
from tests.test_roi_desk import NOW, S, do, fast_hashing, h, new, ready, store_of  # noqa: F401

START = roi_outbox.start  # the real one (the test slows its rounds down)


def _failed_email(h, smtp) -> int:  # noqa: F811
    """A released request's e-mail whose first try failed (the server down): due again in 10 min."""
    rid = new(h, delivery="email")
    ready(h, rid)
    done = do(h, roi_delivery.release, S, rid, user="rel1", store_=store_of())
    smtp.stop()
    failed = roi_delivery.send_email(h.db, mail_for(smtp.port), done["email_id"], now=NOW)
    smtp.start()
    assert failed["status"] == "failed" and failed["attempts"] == 1
    return done["email_id"]


def test_the_retry_sends_a_failed_email_once_it_is_due(h, smtp):  # noqa: F811
    email_id = _failed_email(h, smtp)
    clock = {"now": NOW + timedelta(minutes=5)}
    sender = roi_outbox.OutboxSender(h.db, mail_for(smtp.port), clock=lambda: clock["now"])
    assert sender.run_once() == 0 and smtp.inbox.messages == []  # not due yet
    clock["now"] = NOW + timedelta(minutes=11)
    assert sender.run_once() == 1
    [(to, msg)] = smtp.inbox.messages
    assert to == ["ana@example.org"] and PUBLIC + "/download/" in msg.get_content()
    assert sender.run_once() == 0 and len(smtp.inbox.messages) == 1  # sent: not again
    with h.db.connect() as conn:
        e = outbox_store.get_email(conn, email_id)
    assert (e["status"], e["attempts"], e["sent_at"]) == ("sent", 2, clock["now"])


def test_two_senders_on_one_outbox_send_each_email_once(h, smtp):  # noqa: F811
    email_id = _failed_email(h, smtp)
    later, mail = NOW + timedelta(minutes=11), mail_for(smtp.port)
    with h.db.connect() as conn:  # the console's retry finds it due...
        assert outbox_store.due_emails(conn, later, mail.max_attempts, roi_delivery.STALE_SENDING) == [
            email_id
        ]
    [sent] = roi_delivery.send_due(h.db, mail, now=later)  # ...the engine's sends it meanwhile
    assert sent["id"] == email_id and sent["status"] == "sent"
    again = roi_delivery.send_email(h.db, mail, email_id, now=later, only_due=True)  # the console's turn
    assert again["skipped"] and again["status"] == "sent" and again["attempts"] == 2
    assert len(smtp.inbox.messages) == 1
    assert roi_delivery.send_due(h.db, mail, now=later) == []
    # a clerk's "Send again" is not a retry: it sends whatever the state
    assert roi_delivery.send_email(h.db, mail, email_id, now=later)["attempts"] == 3
    assert len(smtp.inbox.messages) == 2


def _serve(monkeypatch, db_url, tmp_path) -> dict:
    """``interface web`` with uvicorn replaced by a look at the threads while it would serve."""
    seen: dict = {}

    def run(app, **kw):
        seen["outbox"] = [t for t in threading.enumerate() if t.name == "roi-outbox" and t.is_alive()]
        seen["mail"] = app.state.mail

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr("interface.engine.logsetup.configure", lambda: None)  # the test's logging stays
    monkeypatch.setattr(roi_outbox, "start", lambda db, mail: START(db, mail, interval=3600))
    argv = ["web", "--db", db_url, "--var", str(tmp_path / "var"), "--channels", str(tmp_path / "channels")]
    assert cli.main([*argv, "--port", "0"]) == 0
    seen["after"] = [t for t in threading.enumerate() if t.name == "roi-outbox" and t.is_alive()]
    return seen


def test_interface_web_runs_the_retry_beside_the_console(h, db_url, tmp_path, smtp, monkeypatch):  # noqa: F811
    assert _serve(monkeypatch, db_url, tmp_path) == {"outbox": [], "mail": None, "after": []}  # no mail.yaml
    (tmp_path / "mail.yaml").write_text(
        f"smtp: {{host: 127.0.0.1, port: {smtp.port}, from: records@hospital.example}}\npublic_url: {PUBLIC}\n"
    )
    seen = _serve(monkeypatch, db_url, tmp_path)
    assert seen["mail"] is not None and seen["mail"].smtp.port == smtp.port
    assert len(seen["outbox"]) == 1  # retrying while the console serves
    assert seen["after"] == []  # and stopped with it
    assert roi_outbox.start(h.db, None) is None  # no mail: nothing to retry
