"""The web console pages (interface.web.pages) through the real app, on SQLite and PostgreSQL:
every page renders, searches find, clerk actions change state and are audited, CSRF is enforced,
identifiers stay masked until revealed with a reason.

The database is seeded the real way: sample messages through ``Engine.receive`` and a
``Worker``, with three error items of three reasons (a bad birth date to fix and resubmit, an
MDM whose mapping was not loaded to retry, a status change for an unknown document to discard).
"""

from __future__ import annotations

import base64
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text

from interface.config.channels import load_channels
from interface.desk import users
from interface.engine.inbound import Engine
from interface.engine.processing import Pipeline, Worker
from interface.ops.runtime import Runtime, Settings, load_pipeline
from interface.store.documents import DocumentSettings
from interface.store.schema import audit, messages, metadata, work_items
from interface.web.app import create_app
from interface.web.auth import COOKIE

from .conftest import Clock

with warnings.catch_warnings():
    # This starlette warns at import that it prefers the httpx2 package; the client works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_messages"
PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)  # when the messages arrived
APP_NOW = NOW + timedelta(days=20)  # when the clerks look (unsigned notes are overdue by then)

# A08 for Ana Rivera with an impossible birth date (mapping error at PID-7) and a new given name.
BAD_A08 = (
    "MSH|^~\\&|REGADT|HOSP|INTERFACE|HOSP|20260310091500||ADT^A08^ADT_A01|BAD0001|P|2.5.1\r"
    "EVN|A08|20260310091500\r"
    "PID|1||100001^^^HOSP^MR~9434765919^^^NHS^NH||RIVERA^ANNABEL^MARIA^^MS^^L||19840399|F\r"
    "PV1|1|O\r"
)
FIXED_DOB = "19840312"
A28_NGUYEN = (
    "MSH|^~\\&|REGADT|HOSP|INTERFACE|HOSP|20260310080000||ADT^A28^ADT_A05|SEED0003|P|2.5.1\r"
    "EVN|A28|20260310080000\r"
    "PID|1||100003^^^HOSP^MR||NGUYEN^LINH||19910704|F\r"
    "PV1|1|N\r"
)
# A status change for a document nobody sent: unknown_document, for a clerk to discard.
T03_UNKNOWN = (
    "MSH|^~\\&|TRANSCRIBE|HOSP|INTERFACE|HOSP|20261120140000||MDM^T03^MDM_T01|SEED0004|P|2.5.1\r"
    "EVN|T03|20261120140000\r"
    "PID|1||100003^^^HOSP^MR||NGUYEN^LINH||19910704|F\r"
    "PV1|1|O\r"
    "TXA|1|HP^History and physical^HL70270|TX|20261120090000||20261120091500|20261120091500||"
    "1234^SMITH^JOHN^^^^MD^^HOSP||T900^WRIGHT^PAT^^^^^^HOSP|DOC-9999^TRANSCRIBE|||||AU|U|AV|AC\r"
)
# A note for Wei Chen, first processed while the MDM mapping was not loaded: retry succeeds.
T02_CHEN = (
    "MSH|^~\\&|TRANSCRIBE|HOSP|INTERFACE|HOSP|20261121090000||MDM^T02^MDM_T02|SEED0005|P|2.5.1\r"
    "EVN|T02|20261121090000\r"
    "PID|1||100002^^^HOSP^MR||CHEN^WEI||19571102|M\r"
    "PV1|1|O\r"
    "TXA|1|PN^Progress note^HL70270|TX|20261121085000||20261121085500|20261121085500||"
    "1234^SMITH^JOHN^^^^MD^^HOSP||T900^WRIGHT^PAT^^^^^^HOSP|DOC-2001^TRANSCRIBE|||||DI|U|AV|AC\r"
    "OBX|1|TX|PN^Progress note^HL70270|1|Seen on the ward; improving.||||||F\r"
)
HTML_DOC = "<html><body><h1>Discharge letter</h1><script>document.title='pwned'</script></body></html>"
T02_HTML = (
    "MSH|^~\\&|TRANSCRIBE|HOSP|INTERFACE|HOSP|20261121100000||MDM^T02^MDM_T02|SEED0006|P|2.5.1\r"
    "EVN|T02|20261121100000\r"
    "PID|1||100001^^^HOSP^MR||RIVERA^ANA||19840312|F\r"
    "PV1|1|O\r"
    "TXA|1|DS^Discharge summary^HL70270|AP|20261121095000||20261121095500|20261121095500||"
    "1234^SMITH^JOHN^^^^MD^^HOSP||T900^WRIGHT^PAT^^^^^^HOSP|DOC-3001^TRANSCRIBE|||||DI|U|AV|AC\r"
    "OBX|1|ED|DS^Discharge summary^HL70270||HOSP^TEXT^HTML^Base64^"
    + base64.b64encode(HTML_DOC.encode()).decode()
    + "||||||F\r"
)


@dataclass
class Seeded:
    db: object
    channels: dict
    pipeline: Pipeline
    worker: Worker
    engine: Engine
    items: dict = field(default_factory=dict)  # fix / retry / discard -> work item id
    messages: dict = field(default_factory=dict)

    def drain(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            if not self.worker.run_once():
                return


@lru_cache(maxsize=1)
def _config():
    """Channels, compiled mappings and completeness rules, loaded once per test session."""
    channels = {c.name: c for c in load_channels(ROOT / "channels")}
    settings = Settings(
        channels_dir=ROOT / "channels",
        mappings_dir=ROOT / "mappings",
        rules_file=ROOT / "rules" / "completeness.yaml",
        var_dir=ROOT / "var",
    )
    pipeline = load_pipeline(settings, list(channels.values()))
    return channels, pipeline.mappings, pipeline.document_settings.rules


def _parts(db, clock, doc_settings) -> Seeded:
    channels, mappings, _rules = _config()
    pipeline = Pipeline(list(channels.values()), mappings, document_settings=doc_settings)
    worker = Worker(db, pipeline, clock=clock)
    return Seeded(db, channels, pipeline, worker, Engine(db, clock=clock, processor=worker))


def _seed_messages(s: Seeded) -> None:
    """Sample messages through the real engine and worker, leaving three error items."""
    channels, mappings, _rules = _config()

    def send(channel: str, raw: bytes) -> int:
        out = s.engine.receive(channels[channel], raw)
        assert out.status in ("accepted", "processed"), (out.status, out.text)
        return out.message_id

    for f in sorted((SAMPLES / "adt").glob("*.hl7"))[:8]:  # Chen 100002 and Rivera 100001
        send("adt", f.read_bytes())
    for name in ("mdm_t01_original.hl7", "mdm_t02_original_pdf.hl7", "mdm_t06_addendum_text.hl7"):
        send("mdm", (SAMPLES / "mdm" / name).read_bytes())
    send("mdm", T02_HTML.encode())
    send("adt", A28_NGUYEN.encode())
    s.messages["bad"] = send("adt", BAD_A08.encode())
    s.messages["unknown_doc"] = send("mdm", T03_UNKNOWN.encode())
    s.drain()  # the queue keeps each patient's order, so one drain at the end applies them in order
    # The MDM mapping "not deployed yet": this one message fails with processing_error.
    without_mdm = Pipeline(
        list(channels.values()),
        {k: v for k, v in mappings.items() if k != "mdm"},
        document_settings=s.pipeline.document_settings,
    )
    no_mdm = Worker(s.db, without_mdm, clock=s.worker.clock)
    out = Engine(s.db, clock=s.worker.clock, processor=no_mdm).receive(channels["mdm"], T02_CHEN.encode())
    s.messages["no_mapping"] = out.message_id
    no_mdm.run_once()
    with s.db.connect() as conn:
        for key, mid in (
            ("fix", s.messages["bad"]),
            ("discard", s.messages["unknown_doc"]),
            ("retry", s.messages["no_mapping"]),
        ):
            row = conn.execute(select(work_items).where(work_items.c.message_id == mid)).one()
            assert row.status == "error", (key, row.status, row.last_error)
            s.items[key] = row.id
    for name, role in USERS.items():
        make_user(s.db, name, role)
    with s.db.begin() as conn:  # a live browser session per user, so tests skip the password hash
        for name in USERS:
            row = conn.execute(select(users.users).where(users.users.c.name == name)).one()
            SESSIONS[name] = users.create_session(conn, users.User(row.id, row.name, row.role), APP_NOW)


USERS = {"ada": "admin", "carl": "clerk", "aud": "auditor", "ann": "analyst"}
SESSIONS: dict[str, tuple[str, str]] = {}  # user -> (session cookie, CSRF token), made at seeding
_SNAPSHOT: dict = {}  # dialect -> (rows per table, items, messages): the seeded state, made once


def seed(db, clock) -> Seeded:
    """The seeded database: built by really running the messages the first time in a session,
    then restored from a snapshot of its rows (seeding costs seconds, restoring milliseconds).
    Content is kept in the database (``document_blobs``), so the snapshot holds it too."""
    _channels, _mappings, rules = _config()
    s = _parts(db, clock, DocumentSettings(content_dir=None, rules=rules))
    key = db.dialect.name
    tables = [t for t in metadata.sorted_tables]
    if key not in _SNAPSHOT:
        _seed_messages(s)
        with db.connect() as conn:
            rows = {t.name: [dict(r._mapping) for r in conn.execute(select(t))] for t in tables}
        _SNAPSHOT[key] = (rows, dict(s.items), dict(s.messages))
        return s
    rows, s.items, s.messages = _SNAPSHOT[key][0], dict(_SNAPSHOT[key][1]), dict(_SNAPSHOT[key][2])
    with db.begin() as conn:
        for t in tables:
            if rows[t.name]:
                conn.execute(insert(t), rows[t.name])
        if key == "postgresql":  # explicit ids were inserted: move each identity past them
            for t in tables:
                if "id" in t.c and rows[t.name] and t.c.id.autoincrement is not False:
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('\"{t.name}\"', 'id'), "
                            f'(SELECT max(id) FROM "{t.name}"))'
                        )
                    )
    return s


def make_user(db, name: str, role: str) -> None:
    with db.begin() as conn:
        users.add_user(conn, name, role, PASSWORD, now=NOW)


def login(client: TestClient, name: str) -> str:
    form = client.get("/login").text
    token = re.search(r'name="login_token" value="([^"]+)"', form).group(1)
    r = client.post(
        "/login", data={"username": name, "password": PASSWORD, "login_token": token}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    return csrf_of(client)


def csrf_of(client: TestClient) -> str:
    return client.get("/api/me").json()["csrf_token"]


@pytest.fixture
def seeded(engine, tmp_path):
    clock = Clock(NOW)
    s = seed(engine, clock)
    clock.now = APP_NOW  # the worker runs at the clerks' time from now on
    return s


@pytest.fixture
def app(seeded):
    runtime = Runtime()
    runtime.ports["adt"] = 2575
    runtime.counters["adt"] = {"received": 7, "accepted": 2, "processed": 3, "rejected": 1, "duplicate": 1}
    return create_app(
        seeded.db,
        channels=list(seeded.channels.values()),
        runtime=runtime,
        document_settings=seeded.pipeline.document_settings,
        clock=lambda: APP_NOW,
    )


@pytest.fixture
def admin(app, seeded):
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["accept"] = "text/html"
        c.csrf = use_session(c, "ada")
        yield c


def use_session(client: TestClient, name: str) -> str:
    """Act as ``name`` through the session made at seeding (the login form is tested on its own)."""
    sid, csrf = SESSIONS[name]
    client.cookies.set(COOKIE, sid)
    return csrf


def audit_rows(db, **where) -> list:
    q = select(audit).order_by(audit.c.id)
    for k, v in where.items():
        q = q.where(getattr(audit.c, k) == v)
    with db.connect() as conn:
        return conn.execute(q).all()


def item(db, item_id: int):
    with db.connect() as conn:
        return conn.execute(select(work_items).where(work_items.c.id == item_id)).one()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# ---------------------------------------------------------------------------------------------


def test_pages_need_login(app):
    """Without a session every page redirects to the login form, keeping where to come back."""
    with TestClient(app) as c:
        for path in ("/", "/messages", "/errors", "/patients/100001", "/audit"):
            r = c.get(path, headers={"accept": "text/html"}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path


def test_every_page_renders(admin, seeded):
    """Each console page answers 200 with its own heading, no caching of patient data."""
    fix = seeded.items["fix"]
    pages = {
        "/": "Dashboard",
        "/messages": "Messages",
        f"/messages/{seeded.messages['bad']}": "Message",
        f"/messages/{seeded.messages['bad']}?tab=raw": "Message",
        f"/messages/{seeded.messages['bad']}?tab=ack": "Message",
        f"/messages/{seeded.messages['bad']}?tab=history": "Message",
        "/errors": "Error queue",
        f"/errors/{fix}": f"Work item {fix}",
        "/patients": "Patients",
        "/patients/100001": "RIVERA",
        "/documents/DOC-1002": "Document DOC-1002",
        "/deficiencies": "Completeness worklist",
        "/audit": "Audit log",
    }
    for path, heading in pages.items():
        r = admin.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert re.search(r"<h1[^>]*>[^<]*" + re.escape(heading), r.text), path
        assert r.headers["cache-control"] == "no-store"
    assert admin.get("/static/console.css").status_code == 200
    assert "htmx" in admin.get("/static/htmx.min.js").text[:2000]
    assert admin.get("/static/..%2Fpages.py").status_code == 404
    assert admin.get("/messages/999999").status_code == 404


def test_dashboard_channels_and_unhealthy(admin):
    """Per channel: listening state, port, counters, queue, errors; a channel with errors stands out."""
    r = admin.get("/dashboard/channels")
    assert r.status_code == 200
    cards = dict(re.findall(r'data-channel="(\w+)">(.*?)</article>', r.text, re.S))
    adt, mdm = text_of(cards["adt"]), text_of(cards["mdm"])
    assert 'class="card unhealthy"' in r.text
    assert "Needs attention" in adt and "1 in error queue" in adt
    assert "Listening no on port 2575" in adt  # a port recorded but no factory: not listening
    assert "Received 7" in adt and "Rejected 1" in adt and "Duplicates 1" in adt
    assert "Accepted 5" in adt  # accepted + processed (applied inline before the ACK)
    assert "2 in error queue" in mdm
    assert "Stored" in adt and "processed" in cards["adt"]
    assert "Rate (5 min) 0.0/min" in adt  # the seed arrived 20 days before the clerks look


def test_dashboard_rate_counts_the_last_five_minutes(admin, seeded):
    """Messages per minute over the last 5 minutes, per channel: older ones do not count."""
    with seeded.db.begin() as conn:
        conn.execute(
            insert(messages),
            [
                dict(
                    channel="adt",
                    received_at=APP_NOW - timedelta(seconds=s),
                    control_id=f"RATE{s}",
                    message_type="ADT^A08",
                    patient_id="200000",
                    status="processed",
                    raw=b"MSH|^~\\&|X",
                    body_sha256="0" * 64,
                )
                for s in (10, 100, 250, 400, 4000)
            ],
        )
    cards = dict(
        re.findall(r'data-channel="(\w+)">(.*?)</article>', admin.get("/dashboard/channels").text, re.S)
    )
    assert "Rate (5 min) 0.6/min" in text_of(cards["adt"])  # 3 in 5 minutes
    assert "Rate (5 min) 0.0/min" in text_of(cards["mdm"])


def test_message_search_filters(admin, seeded):
    """Search by MRN, control id, type (exact or family), status, channel and received time."""

    def ids(**params):
        r = admin.get("/messages", params=params)
        assert r.status_code == 200, r.text[:300]
        body = r.text.split('id="message-list"', 1)[1]
        return {int(x) for x in re.findall(r'<td><a href="/messages/(\d+)">\d+</a></td>', body)}

    bad = seeded.messages["bad"]
    assert bad in ids(mrn="100001") and seeded.messages["no_mapping"] not in ids(mrn="100001")
    assert ids(control_id="BAD0001") == {bad}
    assert ids(type="ADT^A08") == {bad}
    everything = ids()
    adt = ids(type="ADT")
    assert bad in adt and seeded.messages["unknown_doc"] not in adt
    assert ids(status="error") == {bad, seeded.messages["unknown_doc"], seeded.messages["no_mapping"]}
    assert ids(channel="mdm") == everything - adt
    assert ids(since="2026-11-22T11:59") == everything
    assert ids(until="2026-11-22T11:59") == set()
    assert admin.get("/messages", params={"since": "yesterday"}).status_code == 400
    # MRN searches are audited, with the MRN masked
    rows = audit_rows(seeded.db, action="search", target_type="message")
    assert rows and "100001" not in (rows[-1].detail or "")


def test_message_keyset_paging(admin, seeded):
    """Pages of 50, newest first, by id cursor: no row twice, none missed, newer goes back."""
    with seeded.db.begin() as conn:
        conn.execute(
            insert(messages),
            [
                dict(
                    channel="bulk",
                    received_at=NOW + timedelta(seconds=i),
                    control_id=f"BULK{i:04d}",
                    message_type="ADT^A08",
                    patient_id="200000",
                    status="processed",
                    raw=b"MSH|^~\\&|X",
                    body_sha256="0" * 64,
                )
                for i in range(120)
            ],
        )

    def page(url):
        r = admin.get(url)
        body = r.text.split('id="message-list"', 1)[1]
        ids = [int(x) for x in re.findall(r'<td><a href="/messages/(\d+)">\d+</a></td>', body)]
        older = re.search(r'href="/messages\?([^"]+)" rel="next"', r.text)
        newer = re.search(r'href="/messages\?([^"]+)" rel="prev"', r.text)
        return (
            ids,
            older and older.group(1).replace("&amp;", "&"),
            newer and newer.group(1).replace("&amp;", "&"),
        )

    seen, url, pages = [], "/messages?channel=bulk", []
    while url:
        ids, older, newer = page(url)
        assert ids == sorted(ids, reverse=True)
        pages.append((ids, newer))
        seen += ids
        url = "/messages?" + older if older else None
    assert len(seen) == 120 == len(set(seen)) and [len(p[0]) for p in pages] == [50, 50, 20]
    back, _o, _n = page("/messages?" + pages[1][1])
    assert back == pages[0][0]


def test_message_masked_until_revealed_with_reason(admin, seeded):
    """Names and identifiers are masked in every tab; a reveal needs a reason and is audited."""
    mid = seeded.messages["bad"]
    for tab in ("parsed", "raw"):
        r = admin.get(f"/messages/{mid}?tab={tab}")
        # the banner names the chart's patient to the desk (admin, clerk); the message stays masked
        page = re.sub(r'<p class="patient-banner".*?</p>', "", r.text, flags=re.S)
        assert "RIVERA" not in page and "9434765919" not in page and "19840399" not in page
        assert "•••" in page
    r = admin.post(f"/messages/{mid}/reveal", data={"reason": "  ", "csrf_token": admin.csrf})
    assert r.status_code == 400 and "RIVERA" not in re.sub(
        r'<p class="patient-banner".*?</p>', "", r.text, flags=re.S
    )
    assert not audit_rows(seeded.db, action="reveal")
    r = admin.post(
        f"/messages/{mid}/reveal", data={"reason": "ticket 42", "tab": "raw", "csrf_token": admin.csrf}
    )
    assert r.status_code == 200 and "RIVERA^ANNABEL" in r.text and "19840399" in r.text
    row = audit_rows(seeded.db, action="reveal")[-1]
    assert (row.user, row.target_type, row.target_id, row.reason) == ("ada", "message", str(mid), "ticket 42")
    # the next plain view is masked again
    page = re.sub(
        r'<p class="patient-banner".*?</p>', "", admin.get(f"/messages/{mid}?tab=raw").text, flags=re.S
    )
    assert "RIVERA" not in page and "RIVERA^ANNABEL" not in page


def test_parsed_tab_names_fields_and_marks_the_failing_one(admin, seeded):
    """Field names and descriptions from hl7apy appear on hover; the failing field is flagged."""
    r = admin.get(f"/messages/{seeded.messages['bad']}")
    assert 'title="PID-5 Patient Name — data type XPN"' in r.text
    assert 'title="MSH-9 Message Type — data type MSG"' in r.text
    assert re.search(
        r'title="PID-8 Administrative Sex — data type IS; HL7 table 0001 \(Administrative Sex\)"', r.text
    )
    assert 'title="MSH-9.1 Message Code"' in r.text  # components named too
    assert re.search(r'<tr id="PID-7" class="failing">', r.text)
    assert "Patient Identification" in r.text
    hist = admin.get(f"/messages/{seeded.messages['bad']}?tab=history").text
    assert f"/errors/{seeded.items['fix']}" in hist and "invalid_value" in hist
    ack = admin.get(f"/messages/{seeded.messages['bad']}?tab=ack").text
    assert "MSA" in ack and "BAD0001" in ack


def test_csrf_enforced_on_actions(admin, seeded):
    """A clerk action without the session's CSRF token is refused and changes nothing."""
    fix = seeded.items["fix"]
    for path, data in (
        (f"/errors/{fix}/retry", {}),
        (f"/errors/{fix}/discard", {"reason": "x"}),
        (f"/errors/{fix}/discard", {"reason": "x", "csrf_token": "forged"}),
        ("/errors/bulk", {"action": "retry", "ids": [fix]}),
        (f"/messages/{seeded.messages['bad']}/reveal", {"reason": "x"}),
    ):
        r = admin.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403, path
    assert item(seeded.db, fix).status == "error"
    assert not audit_rows(seeded.db, target_type="work_item")


def test_retry_puts_item_back_and_it_applies(admin, seeded):
    """Retry: the item is pending at once, audited with the user; the worker then applies it."""
    rid = seeded.items["retry"]
    r = admin.post(f"/errors/{rid}/retry", data={"csrf_token": admin.csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/errors/{rid}?done=retry"
    assert item(seeded.db, rid).status == "pending"
    row = audit_rows(seeded.db, action="retry")[-1]
    assert (row.user, row.target_id) == ("ada", str(rid))
    seeded.drain()
    assert item(seeded.db, rid).status == "done"
    page = admin.get(f"/errors/{rid}?done=retry").text
    assert "Put back in the queue" in page and "status-done" in page and "ada" in page
    # a done item cannot be retried again: 409 with the reason, nothing changes
    r = admin.post(f"/errors/{rid}/retry", data={"csrf_token": admin.csrf})
    assert r.status_code == 409 and "only error or held items" in r.text


def test_discard_requires_a_reason(admin, seeded):
    """Discard without a reason is refused; with one the item is discarded and the reason kept."""
    did = seeded.items["discard"]
    r = admin.post(f"/errors/{did}/discard", data={"reason": " ", "csrf_token": admin.csrf})
    assert r.status_code == 400 and item(seeded.db, did).status == "error"
    r = admin.post(
        f"/errors/{did}/discard",
        data={"reason": "sent in error by transcription", "csrf_token": admin.csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert item(seeded.db, did).status == "discarded"
    row = audit_rows(seeded.db, action="discard")[-1]
    assert (row.user, row.reason) == ("ada", "sent in error by transcription")


def test_fix_and_resubmit_changes_the_chart(admin, seeded):
    """The editor (after an audited reveal) shows the raw message and the failing field; the edited
    copy is stored linked to the original, takes the item's place, and the chart changes."""
    fid = seeded.items["fix"]
    page = admin.get(f"/errors/{fid}").text
    assert "PID-7 (Date Time of Birth)" in page and "textarea" not in page
    raw_shown = re.search(r'<pre class="hl7" id="raw"[^>]*>(.*?)</pre>', page, re.S).group(1)
    assert "RIVERA" not in raw_shown  # the message masked; the banner names whose record it is
    page = admin.post(
        f"/errors/{fid}/reveal", data={"reason": "fix birth date", "csrf_token": admin.csrf}
    ).text
    editor = re.search(
        r'<textarea id="raw-editor"[^>]*data-select-start="(\d+)" data-select-end="(\d+)"[^>]*>(.*?)</textarea>',
        page,
        re.S,
    )
    assert editor, page[:2000]
    start, end, raw = int(editor.group(1)), int(editor.group(2)), editor.group(3)
    raw = raw.replace("&amp;", "&")
    assert raw[start:end] == "19840399" and "line 3" in page
    edited = raw[:start] + FIXED_DOB + raw[end:]
    r = admin.post(
        f"/errors/{fid}/resubmit",
        data={"raw": edited, "reason": "typo in DOB", "csrf_token": admin.csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:500]
    it = item(seeded.db, fid)
    assert it.status == "pending" and it.message_id != seeded.messages["bad"]
    with seeded.db.connect() as conn:
        new = conn.execute(select(messages).where(messages.c.id == it.message_id)).one()
        old = conn.execute(select(messages).where(messages.c.id == seeded.messages["bad"])).one()
    assert new.parent_id == old.id and old.status == "resubmitted" and b"19840399" in old.raw
    assert b"19840312" in new.raw and b"\r" in new.raw and b"\n" not in new.raw
    seeded.drain()
    assert item(seeded.db, fid).status == "done"
    chart = admin.get("/patients/100001").text
    assert "ANNABEL" in chart and "1984-03-12" in chart
    assert [r.action for r in audit_rows(seeded.db, target_type="work_item", target_id=str(fid))] == [
        "resubmit"
    ]


def test_bulk_acts_on_exactly_the_selected_rows(admin, seeded):
    """Bulk retry touches only the checked items; bulk discard needs a reason."""
    rid, did, fid = seeded.items["retry"], seeded.items["discard"], seeded.items["fix"]
    listing = admin.get("/errors").text
    for i in (rid, did, fid):
        assert f'name="ids" value="{i}"' in listing
    assert "processing_error" in listing and "unknown_document" in listing and "invalid_value" in listing
    r = admin.post(
        "/errors/bulk", data={"action": "discard", "ids": [did], "reason": "", "csrf_token": admin.csrf}
    )
    assert r.status_code == 400 and item(seeded.db, did).status == "error"
    r = admin.post(
        "/errors/bulk",
        data={"action": "retry", "ids": [rid, did], "csrf_token": admin.csrf, "back": "status=error"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "done=retry" in r.headers["location"] and "n=2" in r.headers["location"]
    assert item(seeded.db, rid).status == "pending" and item(seeded.db, did).status == "pending"
    assert item(seeded.db, fid).status == "error"
    # a row that is no longer in error is reported as not done, by id only
    r = admin.post("/errors/bulk", data={"action": "retry", "ids": [rid], "csrf_token": admin.csrf})
    assert f"Not done (already handled or not in a state that allows it): item {rid}." in r.text
    r = admin.get("/errors", params={"done": "retry", "n": 0, "failed": "<b>call 555</b>,7"})
    assert "call 555" not in r.text and "item 7." in r.text
    r = admin.post(
        "/errors/bulk",
        data={"action": "discard", "ids": [fid], "reason": "duplicate feed", "csrf_token": admin.csrf},
        follow_redirects=False,
    )
    assert item(seeded.db, fid).status == "discarded"
    assert "Discarded: 1 item(s)." in admin.get(r.headers["location"]).text
    assert {(a.action, a.target_id) for a in audit_rows(seeded.db, target_type="work_item")} == {
        ("retry", str(rid)),
        ("retry", str(did)),
        ("discard", str(fid)),
    }


def test_error_queue_groups_and_filters(admin, seeded):
    """Counts per reason; a reason or channel filter narrows the rows."""
    page = admin.get("/errors").text
    groups = dict(re.findall(r'reason=(\w+)"[^>]*>[^<]+ <span class="count">(\d+)</span>', page))
    assert groups == {"invalid_value": "1", "unknown_document": "1", "processing_error": "1"}
    page = admin.get("/errors", params={"reason": "unknown_document"}).text
    assert f'value="{seeded.items["discard"]}"' in page and f'value="{seeded.items["fix"]}"' not in page
    page = admin.get("/errors", params={"channel": "adt"}).text
    assert f'value="{seeded.items["fix"]}"' in page and f'value="{seeded.items["retry"]}"' not in page
    assert "100001" not in text_of(page.split('id="error-list"', 1)[1])  # MRNs masked in the list


def test_patient_search_and_chart(admin, seeded):
    """Search by name prefix and birth date; the chart shows each section; views are audited;
    identifiers other than the MRN are masked until revealed."""
    page = admin.get("/patients", params={"family": "riv"}).text
    assert "/patients/100001" in page and "/patients/100002" not in page
    page = admin.get("/patients", params={"birth_date": "1957"}).text
    assert "/patients/100002" in page and "/patients/100001" not in page
    assert admin.get("/patients", params={"birth_date": "57"}).status_code == 400
    r = admin.get("/patients", params={"mrn": "100002"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/patients/100002"
    chart = admin.get("/patients/100001").text
    for section in (
        "Demographics",
        "Identifiers",
        "Visits",
        "Insurance",
        "Allergies",
        "Diagnoses",
        "Documents",
        "Version history",
    ):
        assert f">{section}</h2>" in chart, section
    assert "Penicillin" in chart and "DOC-1002" in chart and "V5001" in chart
    assert "9434765919" not in chart and "****5919" in chart
    assert audit_rows(seeded.db, action="view", target_type="patient", target_id="100001")
    assert audit_rows(seeded.db, action="search", target_type="patient")
    revealed = admin.post(
        "/patients/100001/reveal", data={"reason": "RoI request 7", "csrf_token": admin.csrf}
    ).text
    assert "9434765919" in revealed
    assert audit_rows(seeded.db, action="reveal", target_type="patient")[-1].reason == "RoI request 7"
    assert admin.get("/patients/999999").status_code == 404


def test_chart_history_initial_entry_masks_identifying_values_until_revealed(admin, seeded):
    """A new patient's ``initial`` history entry (its first values, one JSON object) shows on the
    chart page with the SSN masked inside it; a reveal shows it."""
    from datetime import datetime, timezone

    from interface.mapping.records import ChartUpdate, Identifier, Name, Patient
    from interface.store import chart, chart_apply

    upd = ChartUpdate(
        event="A04",
        mrn="300300",
        patient=Patient(
            identifiers=[Identifier(value="300300", authority="HOSP", type="MR")],
            name=Name(family="Okafor", given="Ada"),
            ssn="987-65-4321",
        ),
    )
    with seeded.db.begin() as conn:
        chart_apply.apply_updates(conn, [upd], message_id=1, now=datetime.now(timezone.utc))
    page = admin.get("/patients/300300").text
    history = page.split('id="history"', 1)[1]
    assert "initial" in history and "Okafor" in history
    assert "987-65-4321" not in page
    revealed = admin.post(
        "/patients/300300/reveal", data={"reason": "RoI request 8", "csrf_token": admin.csrf}
    ).text
    assert "987-65-4321" in revealed.split('id="history"', 1)[1]


def test_document_viewer_text_pdf_html(admin, seeded):
    """Text inline, PDF in an object of the content route, HTML in a sandboxed iframe whose
    content is served with a CSP sandbox; every view audited."""
    text = admin.get("/documents/DOC-1005").text
    assert 'id="document-text"' in text and "Blood cultures negative" in text
    pdf = admin.get("/documents/DOC-1002").text
    assert '<object data="/documents/DOC-1002/content" type="application/pdf"' in pdf
    r = admin.get("/documents/DOC-1002/content")
    assert (
        r.status_code == 200
        and r.content.startswith(b"%PDF")
        and r.headers["content-type"] == "application/pdf"
    )
    html = admin.get("/documents/DOC-3001").text
    assert '<iframe src="/documents/DOC-3001/content" sandbox=""' in html and "pwned" not in html
    r = admin.get("/documents/DOC-3001/content")
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "Version history" in pdf and "/messages/" in pdf
    assert audit_rows(seeded.db, action="view", target_type="document", target_id="DOC-1002")
    assert audit_rows(seeded.db, action="view_content", target_type="document", target_id="DOC-3001")
    assert admin.get("/documents/NOPE").status_code == 404


def test_deficiencies_and_audit_log(admin, seeded):
    """The completeness worklist lists findings; the audit log shows actions, filterable."""
    page = admin.get("/deficiencies").text
    assert 'id="deficiencies"' in page and "/documents/DOC-1001" in page
    admin.post(f"/errors/{seeded.items['retry']}/retry", data={"csrf_token": admin.csrf})
    log = admin.get("/audit", params={"action": "retry"}).text
    body = text_of(log.split('id="audit-log"', 1)[1])
    assert "ada Retried an error item Error item" in body and "Viewed" not in body  # in words
    admin.get("/patients/100002")
    everything = text_of(admin.get("/audit").text.split('id="audit-log"', 1)[1])
    assert "ada Viewed Patient 100002" in everything and "ada Retried an error item Error item" in everything


def test_roles(app, seeded):
    """Clerks work errors and charts but not the audit log; auditors read the audit log and the
    dashboard only; analysts do not see charts."""
    expect = {
        "carl": {"/errors": 200, "/patients/100001": 200, "/audit": 403, "/": 200},
        "aud": {"/errors": 403, "/messages": 403, "/patients/100001": 403, "/audit": 200, "/": 200},
        "ann": {"/errors": 200, "/messages": 200, "/patients/100001": 403, "/deficiencies": 403},
    }
    for name, paths in expect.items():
        with TestClient(app) as c:
            if name == "carl":
                login(c, name)  # the real login form once
            else:
                use_session(c, name)
            for path, status in paths.items():
                assert c.get(path, headers={"accept": "text/html"}).status_code == status, (name, path)
            nav = c.get("/").text
            assert ('href="/audit"' in nav) == (name == "aud")


def test_field_helpers():
    """Field names come from hl7apy for the message's version; failing offsets point at the value."""
    from interface.web.pages import failing_offsets, field_title, parse_location

    assert field_title("2.5.1", "PID", 7)[0] == "Date Time of Birth"
    assert field_title("2.3", "PID", 5)[0] == "Patient Name"
    assert field_title("9.9", "MSH", 10)[0] == "Message Control ID"  # unknown version: 2.5
    assert field_title("2.5", "ZZZ", 1)[0] == "(not in the standard)"
    loc = parse_location("PID-3[2].1")
    assert (loc["segment"], loc["field"], loc["repetition"], loc["component"]) == ("PID", 3, 2, 1)
    text = "MSH|^~\\&|A|B\nPID|1||123||DOE^JO\nOBX|1\nOBX|2|TX"
    line, s, e = failing_offsets(text, parse_location("PID-5"))
    assert line == 2 and text[s:e] == "DOE^JO"
    line, s, e = failing_offsets(text, parse_location("MSH-4"))
    assert text[s:e] == "B"
    loc = parse_location("OBX[2]-2")
    line, s, e = failing_offsets(text, loc)
    assert line == 4 and text[s:e] == "TX"
    assert failing_offsets(text, parse_location("PV1-3")) is None


def test_unreadable_and_rejected_messages_render(admin, seeded):
    """A rejected frame without MSH, and one with an unsupported type, still show raw, parsed
    (as far as it goes), ACK and history."""
    for raw in (
        b"this is not HL7 at all\r\x00\xff",
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X1|P|2.5.1\rOBX|1|TX|||<script>x</script>\r",
    ):
        out = seeded.engine.receive(seeded.channels["adt"], raw)
        assert out.status == "rejected"
        for tab in ("parsed", "raw", "ack", "history"):
            r = admin.get(f"/messages/{out.message_id}?tab={tab}")
            assert r.status_code == 200, (raw, tab)
            assert "<script>x" not in r.text
        assert "AR" in admin.get(f"/messages/{out.message_id}?tab=ack").text


def _error_page(r, status: int, message: str) -> None:
    """An HTML error page in the console's layout: the status, the message, a way back."""
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("text/html"), r.headers["content-type"]
    assert message in r.text, r.text[:500]
    assert '<a href="/">Dashboard</a>' in r.text and "<!doctype html>" in r.text
    assert r.headers["cache-control"] == "no-store"


def test_page_errors_are_html(app, admin, seeded):
    """403 (role, CSRF), 404 (unknown message, item, patient, document, path) and 422 (bad query
    or path parameters) on a console page answer the HTML error page with the status unchanged."""
    with TestClient(app) as clerk:
        use_session(clerk, "carl")
        clerk.headers["accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"
        r = clerk.get("/audit")
        _error_page(r, 403, "role &#39;clerk&#39; may not do this")
        assert 'href="/errors"' in r.text  # the navigation is still the clerk's
    _error_page(
        admin.post(f"/errors/{seeded.items['fix']}/retry", data={"csrf_token": "forged"}),
        403,
        "missing or invalid CSRF token",
    )
    _error_page(admin.get("/messages/999999"), 404, "no message 999999")
    _error_page(admin.get("/errors/999999"), 404, "no work item 999999")
    _error_page(admin.get("/patients/999999"), 404, "no patient with this MRN")
    _error_page(admin.get("/documents/NOPE"), 404, "no such document")
    _error_page(admin.get("/no/such/page"), 404, "Not Found")
    _error_page(admin.get("/messages?before=0"), 422, "before: Input should be greater than or equal to 1")
    _error_page(admin.get("/messages/abc"), 422, "message_id: Input should be a valid integer")
    r = admin.get("/errors?n=<script>alert(1)</script>")
    _error_page(r, 422, "n: Input should be a valid integer")
    assert "<script>alert" not in r.text  # values sent are not echoed, and messages are escaped


def test_api_errors_stay_json(app, admin, seeded):
    """The same failures under /api/ (and on /metrics) keep their JSON answers, even for a browser;
    a page asked for JSON (Accept: application/json) answers JSON too."""
    with TestClient(app) as clerk:
        use_session(clerk, "carl")
        clerk.headers["accept"] = "text/html"
        r = clerk.get("/api/audit")
        assert r.status_code == 403 and r.json()["detail"].startswith("role 'clerk' may not")
    r = admin.post(f"/api/errors/{seeded.items['fix']}/retry", headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403 and r.json() == {"detail": "missing or invalid CSRF token"}
    r = admin.get("/api/messages/999999")
    assert r.status_code == 404 and r.json() == {"detail": "no message 999999"}
    r = admin.get("/api/messages?before_id=0")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "before_id"]
    r = admin.get("/api/nothing-here")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = admin.post("/metrics")
    assert r.status_code == 405 and r.headers["content-type"] == "application/json"
    r = admin.get("/messages/abc", headers={"accept": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "message_id"]
