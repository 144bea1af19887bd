"""Delivery of released records (interface.desk.roi_delivery) on the real store and a real SMTP
server on 127.0.0.1 (aiosmtpd): a release for secure download gives a link that opens its packet
without signing in (and nothing else), every download audited against the patient with the IP;
revoked and expired links get a 410 page in words, unknown ones 404; a release for e-mail sends
the requester a message carrying the link and no patient data; a failed send stays in the outbox,
visible to the clerk, and goes when the server is back; ``interface roi link/links/revoke-link/
outbox``."""

from __future__ import annotations

import io
import re
import socket
import warnings
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as email_policy
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from aiosmtpd.controller import Controller
    from fastapi.testclient import TestClient

from interface.config.mail import MailSettings
from interface.desk import roi_delivery
from interface.store import content
from interface.store.schema import audit
from interface.web.app import create_app
from tests.test_roi_desk import NOW, Args, bearer, fast_hashing, h, new, ready, token  # noqa: F401

PUBLIC = "https://records.example.org"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=email_policy)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    """A real SMTP server on 127.0.0.1 (``.inbox.messages``; ``.stop()``/``.start()`` for an outage)."""
    inbox = Inbox()
    port = _free_port()
    box = {"controller": None}

    def start():
        box["controller"] = Controller(inbox, hostname="127.0.0.1", port=port)
        box["controller"].start()

    def stop():
        box["controller"].stop()

    start()

    class Server:
        pass

    s = Server()
    s.port, s.inbox, s.start, s.stop = port, inbox, start, stop
    yield s
    try:
        stop()
    except Exception:
        pass


def mail_for(port: int) -> MailSettings:
    return MailSettings.model_validate(
        {
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "from": "records@hospital.example",
                "timeout_seconds": 5,
            },
            "public_url": PUBLIC,
            "sender_name": "General Hospital Records",
            "retry_minutes": 10,
        }
    )


@pytest.fixture
def app_of(h, smtp):
    clock = {"now": NOW}
    app = create_app(
        h.db, channels=list(h.channels.values()), clock=lambda: clock["now"], mail=mail_for(smtp.port)
    )
    with TestClient(app) as c:
        c.tokens = {r: token(h.db, r + "1", r) for r in ("clerk", "release")}
        c.clock = clock
        yield c


def _path(url: str) -> str:
    return urlsplit(url).path


def _audits(h, action: str) -> list:
    with h.db.connect() as conn:
        return conn.execute(select(audit).where(audit.c.action == action).order_by(audit.c.id)).all()


def test_secure_download_link_opens_its_packet_only_audited_revocable_and_expiring(h, app_of):
    c, rel = app_of, bearer(app_of, "release")
    rid = new(h)  # the patient's own request, delivery by secure download
    ready(h, rid)
    r = c.post(f"/api/roi/requests/{rid}/release", json={}, headers=rel)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["download_url"].startswith(PUBLIC + "/download/") and done["link_id"]
    path = _path(done["download_url"])
    token_ = path.rsplit("/", 1)[1]
    landing = c.get(path)  # the recipient: no sign-in
    assert landing.status_code == 200 and f"request {rid}" in landing.text and 'id="download"' in landing.text
    assert landing.headers["referrer-policy"] == "no-referrer" and "RIVERA" not in landing.text
    pdf = c.get(path + "/packet.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert content.sha256_hex(pdf.content) == done["sha256"]
    [entry] = _audits(h, "roi_link_download")
    assert entry.patient == "100001" and entry.via == "download" and '"ip": "testclient"' in entry.detail
    assert entry.user == f"recipient (link {done['link_id']})"
    # the token is no credential for anything else
    for other in ("/api/roi/requests", "/api/patients/100001", f"/api/roi/packets/{done['packet_id']}"):
        assert c.get(other, headers={"Authorization": f"Bearer {token_}"}).status_code == 401
    assert c.get(f"/roi/{rid}", headers={"Authorization": f"Bearer {token_}"}).status_code == 401
    # the clerk sees the link with its download, revokes it: the recipient gets a page that says so
    page = c.get(f"/roi/{rid}", headers={**rel, "accept": "text/html"}).text
    assert 'id="roi-links"' in page and "Active" in page and token_ not in page
    r = c.post(
        f"/api/roi/links/{done['link_id']}/revoke", json={"reason": "sent to the wrong address"}, headers=rel
    )
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    gone = c.get(path)
    assert gone.status_code == 410 and 'data-why="revoked"' in gone.text
    assert c.get(path + "/packet.pdf").status_code == 410
    # a new link for one day, expired the day after; an unknown token is not found
    r = c.post(f"/api/roi/packets/{done['packet_id']}/links", json={"days": 1}, headers=rel)
    assert r.status_code == 201 and r.json()["link"]["state"] == "active"
    second = _path(r.json()["download_url"])
    assert c.get(second).status_code == 200
    c.clock["now"] = NOW + timedelta(days=1, seconds=1)
    expired = c.get(second + "/packet.pdf")
    assert expired.status_code == 410 and 'data-why="expired"' in expired.text
    assert c.get("/download/" + "x" * 43).status_code == 404
    assert len(_audits(h, "roi_link_download")) == 1  # refused downloads opened nothing
    d = c.get(f"/api/roi/requests/{rid}/delivery", headers=rel).json()
    assert [(x["state"], x["downloads"]) for x in d["links"]] == [("revoked", 1), ("expired", 0)]
    too_long = c.post(f"/api/roi/packets/{done['packet_id']}/links", json={"days": 200}, headers=rel)
    assert too_long.status_code == 400 and "1 to 90 days" in too_long.text


def _link_in(msg) -> str:
    body = msg.get_body(preferencelist=("plain",)).get_content()
    [url] = re.findall(r"https://\S+", body)
    return url


def test_email_carries_the_link_not_the_records_and_a_failure_waits_in_the_outbox(h, app_of, smtp):
    c, rel = app_of, bearer(app_of, "release")
    rid = new(h, delivery="email")
    ready(h, rid)
    r = c.post(f"/api/roi/requests/{rid}/release", json={}, headers=rel)
    assert r.status_code == 200 and r.json()["email_status"] == "sent" and r.json()["download_url"] is None
    [(to, msg)] = smtp.inbox.messages
    assert to == ["ana@example.org"] and msg["From"] == "General Hospital Records <records@hospital.example>"
    assert f"request {rid}" in msg["Subject"]
    text = msg.as_string()
    for phi in ("100001", "RIVERA", "Rivera", "ANA", "Ana ", "1984", "DOC-1002", "Discharge"):
        assert phi not in text, phi
    assert not list(msg.iter_attachments())
    url = _link_in(msg)
    assert url.startswith(PUBLIC + "/download/")
    assert c.get(_path(url) + "/packet.pdf").content.startswith(b"%PDF")
    # the server is down: the e-mail fails, is kept with its error, shown to the clerk
    smtp.stop()
    rid2 = new(h, delivery="email", requester_email="other@example.org")
    ready(h, rid2)
    r = c.post(f"/api/roi/requests/{rid2}/release", json={}, headers=rel)
    assert r.status_code == 200 and r.json()["email_status"] == "failed"
    [failed] = c.get("/api/roi/outbox", params={"status": "failed"}, headers=rel).json()["emails"]
    assert failed["request_id"] == rid2 and failed["attempts"] == 1 and "Error" in failed["last_error"]
    page = c.get(f"/roi/{rid2}", headers={**rel, "accept": "text/html"}).text
    assert 'class="roi-email email-failed"' in page and "Not sent yet: failed" in page
    # back up: the outbox's retry sends it once it is due (not before)
    smtp.start()
    mail = mail_for(smtp.port)
    assert roi_delivery.send_due(h.db, mail, now=NOW + timedelta(minutes=5)) == []
    [sent] = roi_delivery.send_due(h.db, mail, now=NOW + timedelta(minutes=11))
    assert sent["status"] == "sent" and sent["attempts"] == 2
    (to2, msg2) = smtp.inbox.messages[-1]
    assert to2 == ["other@example.org"]
    assert c.get(_path(_link_in(msg2))).status_code == 200
    # "send again" gives the link a new address: the old one stops working
    old = _path(_link_in(msg2))
    r = c.post(f"/api/roi/outbox/{failed['id']}/send", headers=rel)
    assert r.status_code == 200 and r.json()["status"] == "sent" and r.json()["attempts"] == 3
    assert c.get(old).status_code == 404
    assert c.get(_path(_link_in(smtp.inbox.messages[-1][1]))).status_code == 200


def test_cli_links_and_outbox(h, db_url, tmp_path, smtp):
    from interface.ops import roi_cli

    (tmp_path / "mail.yaml").write_text(
        f"smtp: {{host: 127.0.0.1, port: {smtp.port}, from: records@hospital.example}}\npublic_url: {PUBLIC}\n"
    )

    def cli(*argv):
        out = io.StringIO()
        code = roi_cli.main(
            ["--user", "rel1", "--mail", str(tmp_path / "mail.yaml"), *argv],
            Args(db_url, tmp_path),
            now=NOW,
            out=out,
        )
        return code, out.getvalue()

    rid = new(h)
    ready(h, rid)
    code, out = cli("release", str(rid))
    assert code == 0 and f"download link 1 (shown only now): {PUBLIC}/download/" in out
    code, out = cli("link", "1", "--days", "3")
    assert code == 0 and "link 2 until 2026-12-13" in out and f"{PUBLIC}/download/" in out
    code, out = cli("link", "1", "--email")
    assert code == 0 and "\tSent\t" in out and len(smtp.inbox.messages) == 1
    code, out = cli("revoke-link", "2", "--reason", "not needed")
    assert code == 0
    code, out = cli("links", str(rid))
    assert "link 2\tpacket 1\tRevoked" in out and "e-mail 1\trequest" in out
    code, out = cli("outbox", "--status", "sent")
    assert code == 0 and out.count("e-mail ") == 1
    with h.db.connect() as conn:
        rows = conn.execute(
            select(audit.c.action, audit.c.via, audit.c.patient).where(audit.c.action.like("roi_link%"))
        ).all()
    assert {(a, v, p) for a, v, p in rows} >= {
        ("roi_link", "cli", "100001"),
        ("roi_link_revoke", "cli", "100001"),
    }


def test_interface_check_reports_mail_yaml_problems_with_lines(tmp_path, capsys):
    from interface.ops import cli

    bad = tmp_path / "mail.yaml"
    bad.write_text("smtp:\n  host: smtp.example.org\n  from: nobody\npublic_url: ftp://x\n")
    assert cli.main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:3: smtp.from: 'nobody' is not an e-mail address" in out
    assert f"{bad}:4: public_url: public_url must start with http:// or https://" in out
    bad.write_text(
        "smtp: {host: smtp.example.org, from: records@example.org}\npublic_url: https://r.example\n"
    )
    assert cli.main(["check", str(bad)]) == 0
