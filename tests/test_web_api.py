"""The REST API: health, channels, message search and detail, the error queue, audit, /metrics."""

from __future__ import annotations

import json
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

with warnings.catch_warnings():
    # This starlette warns at import that it prefers the httpx2 package; the client works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from interface.config.channels import load_channels
from interface.desk import users
from interface.engine.inbound import Engine
from interface.store import workqueue
from interface.store.schema import audit, messages, work_items, work_keys
from interface.web.app import create_app

from .conftest import Clock

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"


def adt(control_id: str, mrn: str, trigger: str = "A08", when: str = "20261122110000") -> bytes:
    return (
        f"MSH|^~\\&|REG|HOSP|INTERFACE|HOSP|{when}||ADT^{trigger}^ADT_A01|{control_id}|P|2.5.1\r"
        f"EVN|{trigger}|{when}\r"
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE^Q||19800131|F\r"
        f"PV1|1|I|W1^101^A\r"
    ).encode()


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def channels():
    return load_channels(ROOT / "channels")


@pytest.fixture
def app(engine, channels, clock):
    return create_app(engine, channels=channels, clock=clock)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def make_user(engine, name, role) -> str:
    """Creates a user with PASSWORD and returns a new API token for it."""
    with engine.begin() as conn:
        users.add_user(conn, name, role, PASSWORD, now=NOW)
        return users.new_token(conn, name, now=NOW, scopes="user/*.read")  # FHIR: user/*.read


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    """Cheap argon2 parameters: the tests check behaviour, not the KDF's cost."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


@pytest.fixture
def tokens(engine, fast_hashing):
    return {role: make_user(engine, role + "1", role) for role in users.ROLES}


def h(token):
    return {"Authorization": f"Bearer {token}"}


def receive(engine, channels, clock, items):
    """Journal each (control_id, mrn) through the engine; returns the message ids."""
    eng = Engine(engine, clock=clock)
    ch = next(c for c in channels if c.name == "adt")
    ids = []
    for cid, mrn in items:
        out = eng.receive(ch, adt(cid, mrn))
        assert out.status == "accepted", out
        ids.append(out.message_id)
    return ids


def item_of(engine, message_id):
    with engine.connect() as conn:
        return conn.execute(select(work_items).where(work_items.c.message_id == message_id)).first()


def fail(engine, message_id, reason="unknown_patient"):
    it = item_of(engine, message_id)
    with engine.begin() as conn:
        workqueue.mark_error(conn, it.id, message_id, NOW, 1, "no such patient", reason, "PID-3")
    return it.id


def audit_rows(engine, **where):
    q = select(audit).order_by(audit.c.id)
    for k, v in where.items():
        q = q.where(audit.c[k] == v)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


# -- health, channels, metrics ------------------------------------------------------------------


def test_health_needs_no_login_and_reports_database(client):
    """GET /api/health answers without a login and says the database is reachable."""
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok", "reasons": []}


def test_channels_queue_figures_from_database(client, engine, channels, clock, tokens):
    """GET /api/channels lists configured channels with queue counts and the oldest pending age."""
    ids = receive(engine, channels, clock, [("C1", "10000001"), ("C2", "10000002"), ("C3", "10000003")])
    fail(engine, ids[0])
    it = item_of(engine, ids[1])
    with engine.begin() as conn:
        workqueue.mark_done(conn, it.id, ids[1], NOW, 1)
    clock.now = NOW + timedelta(seconds=90)
    r = client.get("/api/channels", headers=h(tokens["auditor"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["runtime"] is False
    by = {c["name"]: c for c in body["channels"]}
    assert {"adt", "mdm"} <= set(by)
    q = by["adt"]["queue"]
    assert (q["queued"], q["errored"], q["processed"], q["in_progress"]) == (1, 1, 1, 0)
    assert q["oldest_pending_age_seconds"] == 90.0
    assert by["adt"]["listening"] is None and by["adt"]["counters"] is None
    assert by["mdm"]["queue"]["queued"] == 0


def test_channels_live_counters_from_runtime(engine, channels, clock, tokens):
    """With an engine runtime, /api/channels and /metrics show counters and connections."""
    from interface.ops.runtime import Runtime

    class Factory:
        connections = 3

    rt = Runtime()
    rt.factories["adt"] = Factory()
    rt.ports["adt"] = 2575
    rt.counters["adt"] = {"received": 7, "accepted": 4, "duplicate": 2, "rejected": 1}
    app = create_app(engine, channels=channels, runtime=rt, clock=clock)
    receive(engine, channels, clock, [("C1", "10000001")])
    with TestClient(app) as c:
        adt_state = next(
            x
            for x in c.get("/api/channels", headers=h(tokens["analyst"])).json()["channels"]
            if x["name"] == "adt"
        )
        metrics = c.get("/metrics").text
    assert adt_state["listening"] is True and adt_state["connections"] == 3 and adt_state["port"] == 2575
    assert adt_state["counters"] == {
        "received": 7,
        "accepted": 4,
        "rejected": 1,
        "duplicates": 2,
        "quarantined": 0,
        "errors": 0,
    }
    assert 'interface_messages_received_total{channel="adt"} 7.0' in metrics
    assert 'interface_messages_duplicates_total{channel="adt"} 2.0' in metrics
    assert 'interface_connections{channel="adt"} 3.0' in metrics


def test_metrics_queue_per_channel_and_destination_without_patient_data(client, engine, channels, clock):
    """/metrics reads queue counts at scrape time; labels hold no patient identifiers."""
    ids = receive(engine, channels, clock, [("C1", "10000001"), ("C2", "10000002")])
    fail(engine, ids[0])
    clock.now = NOW + timedelta(seconds=30)
    r = client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    dest = item_of(engine, ids[0]).destination
    assert f'interface_work_items{{channel="adt",destination="{dest}",state="errored"}} 1.0' in text
    assert f'interface_work_items{{channel="adt",destination="{dest}",state="queued"}} 1.0' in text
    assert f'interface_work_oldest_pending_age_seconds{{channel="adt",destination="{dest}"}} 30.0' in text
    assert "interface_database_up 1.0" in text
    assert "10000001" not in text and "10000002" not in text and "DOE" not in text


# -- messages -------------------------------------------------------------------------------------


def test_messages_newest_first_masked_and_keyset_paged(client, engine, channels, clock, tokens):
    """GET /api/messages: newest first, MRNs masked, next page via before_id."""
    ids = receive(engine, channels, clock, [(f"C{i}", f"1000000{i}") for i in range(5)])
    r = client.get("/api/messages?limit=2", headers=h(tokens["analyst"]))
    assert r.status_code == 200, r.text
    page = r.json()
    assert [m["id"] for m in page["messages"]] == ids[::-1][:2]
    assert page["messages"][0]["patient_id"] == "****0004"
    assert page["revealed"] is False
    r2 = client.get(f"/api/messages?limit=2&before_id={page['next_before_id']}", headers=h(tokens["analyst"]))
    assert [m["id"] for m in r2.json()["messages"]] == ids[::-1][2:4]
    r3 = client.get(
        f"/api/messages?limit=2&before_id={r2.json()['next_before_id']}", headers=h(tokens["analyst"])
    )
    assert [m["id"] for m in r3.json()["messages"]] == ids[:1]
    assert r3.json()["next_before_id"] is None


def test_message_filters(client, engine, channels, clock, tokens):
    """Filters: mrn, control_id, type (family or exact), status, channel, since/until."""
    ids = receive(engine, channels, clock, [("C1", "10000001"), ("C2", "10000002")])
    clock.now = NOW + timedelta(hours=1)
    ids += receive(engine, channels, clock, [("C3", "10000001")])
    fail(engine, ids[1])
    hdr = h(tokens["clerk"])

    def found(qs):
        r = client.get("/api/messages?" + qs, headers=hdr)
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["messages"]]

    assert found("mrn=10000001") == [ids[2], ids[0]]
    assert found("control_id=C2") == [ids[1]]
    assert found("type=ADT") == ids[::-1]
    assert found("type=ADT%5EA08") == ids[::-1]
    assert found("type=ADT%5EA01") == []
    assert found("type=AD") == []
    assert found("status=error") == [ids[1]]
    assert found("channel=mdm") == []
    assert found("since=2026-11-22T12:30:00Z") == [ids[2]]
    assert found("until=2026-11-22T12:30:00%2B00:00") == [ids[1], ids[0]]
    # a search by MRN is audited (who looked for which patient)
    assert audit_rows(engine, action="search", target_id="10000001")


def test_reveal_needs_reason_and_is_audited(client, engine, channels, clock, tokens):
    """reveal=true without a reason is 400; with one, identifiers show and an audit row is written."""
    receive(engine, channels, clock, [("C1", "12345678")])
    assert client.get("/api/messages?reveal=true", headers=h(tokens["clerk"])).status_code == 400
    r = client.get("/api/messages?reveal=true&reason=ROI%20request%2042", headers=h(tokens["clerk"]))
    assert r.status_code == 200
    assert r.json()["messages"][0]["patient_id"] == "12345678"
    rows = audit_rows(engine, action="reveal")
    assert len(rows) == 1 and rows[0]["user"] == "clerk1" and rows[0]["reason"] == "ROI request 42"


def test_message_detail_fields_ack_history_and_audit(client, engine, channels, clock, tokens):
    """GET /api/messages/{id} (revealed with a reason: masked otherwise, see test_masking.py):
    raw, named segments/fields, the ACK, work item history; audited."""
    ids = receive(engine, channels, clock, [("C1", "10000001")])
    fail(engine, ids[0])
    r = client.get(f"/api/messages/{ids[0]}?reveal=true&reason=test", headers=h(tokens["analyst"]))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["raw"].startswith("MSH|^~\\&|REG|HOSP") and "\nPID|1||10000001" in d["raw"]
    assert d["ack"].startswith("MSH|") and "MSA|AA|C1" in d["ack"]
    pid = next(s for s in d["segments"] if s["name"] == "PID")
    f3 = next(f for f in pid["fields"] if f["position"] == 3)
    assert f3["name"] == "PATIENT_IDENTIFIER_LIST" and f3["description"] == "Patient Identifier List"
    assert f3["datatype"] == "CX"
    comps = f3["repetitions"][0]
    assert comps[0] == {"position": 1, "name": "ID_NUMBER", "value": "10000001"}
    assert comps[4]["name"] == "IDENTIFIER_TYPE_CODE" and comps[4]["value"] == "MR"
    msh9 = next(f for f in d["segments"][0]["fields"] if f["position"] == 9)
    assert msh9["name"] == "MESSAGE_TYPE"
    (wi,) = d["work_items"]
    assert wi["status"] == "error" and wi["history"][-1]["outcome"] == "error"
    assert audit_rows(engine, action="view", target_type="message", target_id=str(ids[0]))
    assert client.get("/api/messages/999999", headers=h(tokens["analyst"])).status_code == 404


# -- error queue ------------------------------------------------------------------------------------


def test_errors_list_masks_keys_and_filters(client, engine, channels, clock, tokens):
    """GET /api/errors lists error items with masked patient keys; filters by reason/channel/status."""
    ids = receive(engine, channels, clock, [("C1", "10000001"), ("C2", "10000002"), ("C3", "10000003")])
    e1 = fail(engine, ids[0], "unknown_patient")
    e2 = fail(engine, ids[1], "missing_field")
    hdr = h(tokens["clerk"])
    items = client.get("/api/errors", headers=hdr).json()["items"]
    assert [i["id"] for i in items] == [e2, e1]
    assert items[1]["key"] == "mrn:****0001" and items[1]["control_id"] == "C1"
    assert [i["id"] for i in client.get("/api/errors?reason=missing_field", headers=hdr).json()["items"]] == [
        e2
    ]
    assert client.get("/api/errors?channel=mdm", headers=hdr).json()["items"] == []
    assert len(client.get("/api/errors?status=pending", headers=hdr).json()["items"]) == 1
    assert client.get("/api/errors?status=bogus", headers=hdr).status_code == 400
    d = client.get(f"/api/errors/{e1}", headers=hdr).json()
    assert d["history"][0]["outcome"] == "error"
    assert client.get("/api/errors?reveal=true", headers=hdr).status_code == 400
    shown = client.get("/api/errors?reveal=true&why=chart%20fix", headers=hdr).json()["items"]
    assert shown[1]["key"] == "mrn:10000001"
    (row,) = audit_rows(engine, action="reveal", target_type="work_items")
    assert row["reason"] == "chart fix" and row["user"] == "clerk1"


def test_retry_discard_resubmit_record_the_user(client, engine, channels, clock, tokens):
    """The clerk actions change the item and write audit rows with the acting user."""
    ids = receive(engine, channels, clock, [("C1", "10000001"), ("C2", "10000002"), ("C3", "10000003")])
    e1, e2, e3 = (fail(engine, i) for i in ids)
    hdr = h(tokens["clerk"])
    r = client.post(f"/api/errors/{e1}/retry", headers=hdr)
    assert r.status_code == 200 and r.json()["status"] == "pending"
    r = client.post(f"/api/errors/{e2}/discard", headers=hdr, json={"reason": "test feed"})
    assert r.status_code == 200 and r.json()["status"] == "discarded"
    edited = adt("C3", "10000003").decode().replace("DOE", "DOE-SMITH").replace("\r", "\n")
    r = client.post(f"/api/errors/{e3}/resubmit", headers=hdr, json={"raw": edited, "reason": "name fixed"})
    assert r.status_code == 200, r.text
    new_id = r.json()["message_id"]
    with engine.connect() as conn:
        new = conn.execute(select(messages).where(messages.c.id == new_id)).first()
    assert new.parent_id == ids[2] and b"DOE-SMITH" in new.raw and b"\n" not in new.raw
    rows = audit_rows(engine, target_type="work_item")
    assert [(a["action"], a["user"], a["target_id"]) for a in rows] == [
        ("retry", "clerk1", str(e1)),
        ("discard", "clerk1", str(e2)),
        ("resubmit", "clerk1", str(e3)),
    ]
    assert rows[1]["reason"] == "test feed"


def test_action_errors_are_4xx_json(client, engine, channels, clock, tokens):
    """Unknown item 404, wrong state 409, missing/blank reason 422, bad raw 409 — never 500."""
    ids = receive(engine, channels, clock, [("C1", "10000001")])
    item = item_of(engine, ids[0]).id
    hdr = h(tokens["admin"])
    assert client.post("/api/errors/999999/retry", headers=hdr).status_code == 404
    r = client.post(f"/api/errors/{item}/retry", headers=hdr)
    assert r.status_code == 409 and "pending" in r.json()["detail"]
    assert client.post(f"/api/errors/{item}/discard", headers=hdr, json={}).status_code == 422
    assert client.post(f"/api/errors/{item}/discard", headers=hdr, json={"reason": "   "}).status_code == 422
    assert (
        client.post(
            f"/api/errors/{item}/discard",
            headers=hdr,
            content=b"not json",
        ).status_code
        == 422
    )
    fail(engine, ids[0])
    r = client.post(f"/api/errors/{item}/resubmit", headers=hdr, json={"raw": "garbage that is not HL7"})
    assert r.status_code == 409 and "cannot be read" in r.json()["detail"]
    assert client.get("/api/messages?before_id=0", headers=hdr).status_code == 422
    assert client.get("/api/messages?since=notadate", headers=hdr).status_code == 422
    assert client.get("/api/messages?control_id=a%00b", headers=hdr).status_code == 400


def test_bulk_acts_on_exactly_the_selected_items(client, engine, channels, clock, tokens):
    """Bulk retry by ids touches only those; bulk discard by filter needs a reason and honours max_id."""
    ids = receive(engine, channels, clock, [(f"C{i}", f"2000000{i}") for i in range(6)])
    errs = [fail(engine, i, "unknown_patient" if n < 4 else "missing_field") for n, i in enumerate(ids)]
    hdr = h(tokens["analyst"])
    r = client.post("/api/errors/bulk", headers=hdr, json={"action": "retry", "ids": [errs[0], errs[2]]})
    assert r.status_code == 200, r.text
    assert r.json()["succeeded"] == [errs[0], errs[2]] and r.json()["failed"] == []
    with engine.connect() as conn:
        st = dict(conn.execute(select(work_items.c.id, work_items.c.status)).all())
    assert [st[e] for e in errs] == ["pending", "error", "pending", "error", "error", "error"]
    bad = client.post(
        "/api/errors/bulk", headers=hdr, json={"action": "discard", "filter": {"reason": "unknown_patient"}}
    )
    assert bad.status_code == 422
    assert (
        client.post(
            "/api/errors/bulk", headers=hdr, json={"action": "retry", "ids": [1], "filter": {}}
        ).status_code
        == 422
    )
    r = client.post(
        "/api/errors/bulk",
        headers=hdr,
        json={
            "action": "discard",
            "reason": "old test data",
            "filter": {"reason": "unknown_patient", "max_id": errs[1]},
        },
    )
    assert r.json()["succeeded"] == [errs[1]]  # errs[3] is newer than max_id; errs[0], errs[2] pending
    r = client.post(
        "/api/errors/bulk", headers=hdr, json={"action": "retry", "ids": [errs[1], errs[4], 999999]}
    )
    assert r.json()["succeeded"] == [errs[4]]
    assert {f["id"] for f in r.json()["failed"]} == {errs[1], 999999}
    assert len(audit_rows(engine, action="discard", user="analyst1")) == 1


# -- audit log ------------------------------------------------------------------------------------


def test_audit_log_for_auditor_and_admin_only(client, engine, channels, clock, tokens):
    """GET /api/audit: auditor and admin read it, newest first, filtered; others get 403."""
    ids = receive(engine, channels, clock, [("C1", "10000001")])
    client.get(f"/api/messages/{ids[0]}", headers=h(tokens["clerk"]))
    assert client.get("/api/audit", headers=h(tokens["clerk"])).status_code == 403
    assert client.get("/api/audit", headers=h(tokens["analyst"])).status_code == 403
    r = client.get("/api/audit?action=view", headers=h(tokens["auditor"]))
    assert r.status_code == 200
    (e,) = r.json()["entries"]
    assert e["user"] == "clerk1" and e["target_type"] == "message" and e["target_id"] == str(ids[0])
    all_rows = client.get("/api/audit?limit=1", headers=h(tokens["admin"])).json()
    assert len(all_rows["entries"]) == 1 and all_rows["next_before_id"] is not None


def test_patients_api_requires_clerk_and_audits_views(client, engine, tokens):
    """The patients router needs a clerk (or admin) and every chart view is audited."""
    assert client.get("/api/patients/M1").status_code == 401
    assert client.get("/api/patients/M1", headers=h(tokens["analyst"])).status_code == 403
    assert client.get("/api/patients/M1", headers=h(tokens["clerk"])).status_code == 404
    rows = audit_rows(engine, action="view", target_type="patient")
    assert rows and rows[0]["target_id"] == "M1" and rows[0]["user"] == "clerk1"
    assert client.get("/api/patients?family=Doe", headers=h(tokens["clerk"])).status_code == 200
    assert json.loads(audit_rows(engine, action="search", target_type="patient")[0]["detail"]) == {
        "family": "Doe"
    }


def test_messages_search_uses_only_index_paths(engine, channels, clock, tokens, app):
    """A page of messages is one bounded query: LIMIT limit+1, no COUNT."""
    from sqlalchemy import event

    statements = []

    def seen(conn, cursor, statement, *a):
        statements.append(statement)

    receive(engine, channels, clock, [("C1", "10000001")])
    reader = app.state.reader  # reads go through the read-only engine (the engine itself on PostgreSQL)
    event.listen(reader, "before_cursor_execute", seen)
    try:
        with TestClient(app) as c:
            assert c.get("/api/messages?type=ADT&limit=10", headers=h(tokens["analyst"])).status_code == 200
    finally:
        event.remove(reader, "before_cursor_execute", seen)
    msg_queries = [s for s in statements if "FROM messages" in s]
    assert len(msg_queries) == 1
    assert "count(" not in msg_queries[0].lower() and "LIMIT" in msg_queries[0]
    assert " LIKE " not in msg_queries[0]


@pytest.mark.parametrize(
    "value,masked",
    [
        ("12345678", "****5678"),
        ("100002", "****002"),
        ("1234", "****34"),
        ("1", "****"),
        ("mrn:12345678", "mrn:****5678"),
        (None, None),
    ],
)
def test_mask_shows_at_most_half_and_four(value, masked):
    from interface.web.auth import mask

    assert mask(value) == masked


def test_events_listed_newest_first(client, engine, tokens):
    """GET /api/events lists wire events, filtered by channel and kind, newest first."""
    from interface.store import journal

    with engine.begin() as conn:
        journal.record_event(conn, at=NOW, kind="refused_peer", channel="adt", peer="10.0.0.9:1234")
        journal.record_event(conn, at=NOW, kind="frame_too_large", channel="mdm", peer="10.0.0.8:99")
    r = client.get("/api/events", headers=h(tokens["auditor"]))
    assert [e["kind"] for e in r.json()["events"]] == ["frame_too_large", "refused_peer"]
    r = client.get("/api/events?channel=adt", headers=h(tokens["analyst"]))
    assert [e["peer"] for e in r.json()["events"]] == ["10.0.0.9:1234"]
    assert client.get("/api/events?kind=none", headers=h(tokens["clerk"])).json()["events"] == []
    assert client.get("/api/events").status_code == 401


def test_database_down_is_503_not_500():
    """With the database unreachable: /api/health says so (503), the API answers 503 JSON,
    /metrics still answers with interface_database_up 0."""
    from interface.store.db import make_engine

    down = make_engine("postgresql://127.0.0.1:1/nothing?connect_timeout=2")
    app = create_app(down, channels=[])
    try:
        with TestClient(app) as c:
            r = c.get("/api/health")
            assert (
                r.status_code == 503
                and r.json()["status"] == "error"
                and r.json()["database"] == "unreachable"
            )
            r = c.get("/api/messages", headers=h("ie_whatever"))
            assert r.status_code == 503 and r.json()["detail"] == "database unavailable"
            m = c.get("/metrics")
            assert m.status_code == 200 and "interface_database_up 0.0" in m.text
    finally:
        down.dispose()


def test_reprocess_queues_a_message_again_to_one_destination(client, engine, channels, clock, tokens):
    """POST /api/messages/{id}/reprocess adds a new pending item for that destination, audited;
    refused while one is still queued, 404 for an unknown message, 409 for an unknown destination."""
    (mid,) = receive(engine, channels, clock, [("RP1", "40000001")])
    hdr = h(tokens["clerk"])
    busy = client.post(f"/api/messages/{mid}/reprocess", headers=hdr, json={"destination": "store"})
    assert busy.status_code == 409 and "already queued" in busy.json()["detail"]
    first = item_of(engine, mid)
    with engine.begin() as conn:
        conn.execute(update(work_items).where(work_items.c.id == first.id).values(status="done"))
        conn.execute(work_keys.delete().where(work_keys.c.item_id == first.id))
    r = client.post(
        f"/api/messages/{mid}/reprocess",
        headers=hdr,
        json={"destination": "store", "reason": "chart restored from backup"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["action"] == "reprocess" and body["status"] == "pending" and body["message_id"] == mid
    assert body["id"] != first.id
    rows = audit_rows(engine, action="reprocess")
    assert [(a["user"], a["target_id"], a["reason"]) for a in rows] == [
        ("clerk1", str(mid), "chart restored from backup")
    ]
    assert (
        client.post(
            f"/api/messages/{mid}/reprocess", headers=hdr, json={"destination": "nowhere"}
        ).status_code
        == 409
    )
    assert (
        client.post("/api/messages/999999/reprocess", headers=hdr, json={"destination": "store"}).status_code
        == 404
    )
    assert (
        client.post(
            f"/api/messages/{mid}/reprocess", headers=h(tokens["auditor"]), json={"destination": "store"}
        ).status_code
        == 403
    )


def test_console_reads_never_wait_for_the_write_lock(tmp_path, channels, clock, fast_hashing):
    """SQLite: the journal writer (here: another connection) holds the write lock; the console's
    reads — the token check, a message search, a chart — still answer at once, from a WAL
    snapshot (db.read_only_engine), instead of queueing behind it, and a slow read would not
    hold the writer up either. A write (an audit row) still waits for the lock, as it must."""
    from interface.store import db as dbmod

    db = dbmod.make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    dbmod.create_schema(db)
    token = make_user(db, "analyst1", "analyst")
    receive(db, channels, clock, [("C1", "10000001")])
    app = create_app(db, channels=channels, clock=clock)
    lock = dbmod.write_lock_of(db)
    lock.timeout = 1.0  # the old way (every read behind the lock) failed after this
    holder = object()
    lock.acquire(holder)
    try:
        with TestClient(app) as c:
            t0 = time.monotonic()
            r = c.get("/api/messages?type=ADT&limit=10", headers=h(token))
            assert r.status_code == 200 and len(r.json()["messages"]) == 1, r.text
            assert c.get("/api/channels", headers=h(token)).status_code == 200
            assert time.monotonic() - t0 < lock.timeout
            # a search by MRN must write its audit row: that waits for the lock, and fails
            # closed (no answer without its audit row) when the lock never comes
            assert c.get("/api/messages?mrn=10000001", headers=h(token)).status_code == 503
            lock.release(holder)
            assert c.get("/api/messages?mrn=10000001", headers=h(token)).status_code == 200
    finally:
        lock.release(holder)
    with app.state.reader.connect() as conn:  # and nothing can write through the reader
        with pytest.raises(OperationalError, match="readonly"):
            conn.exec_driver_sql("DELETE FROM messages")
    app.state.reader.dispose()
    db.dispose()
