"""The error queue tells the truth (issue 16 part 3), on SQLite and PostgreSQL:

* how many of the patient's later messages wait behind an item (``workqueue.waiting_behind``,
  several keys: a merge's item holds two);
* a channel with items blocked behind an error or held for an unknown patient is degraded, with
  the counts and the oldest age — ``/api/channels``, the dashboard;
* held items are listed by default, with a status filter — console, API, CLI;
* an item fixed by retry or resubmit shows done, its past error as history;
* words instead of codes (``interface.rules.words``), one time format in ``INTERFACE_TIMEZONE``.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select

from interface.desk import errorqueue, users
from interface.ops import cli
from interface.rules import words
from interface.store import workqueue
from interface.store.schema import messages, work_items, work_keys
from interface.web import pages
from interface.web.app import create_app

from .conftest import Clock

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"


def adt(control_id: str, mrn: str) -> bytes:
    return (
        f"MSH|^~\\&|REG|HOSP|INTERFACE|HOSP|20261122110000||ADT^A08^ADT_A01|{control_id}|P|2.5.1\r"
        "EVN|A08|20261122110000\r"
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19800131|F\r"
        "PV1|1|I\r"
    ).encode()


def add_item(conn, keys: list[str], *, status="pending", channel="adt", created=NOW, cid=None) -> int:
    """A message and its work item holding ``keys`` (none when held, done or discarded)."""
    raw = adt(cid or f"C{len(keys)}{keys[0]}", keys[0].split(":")[-1])
    mid = conn.execute(
        insert(messages)
        .values(
            channel=channel,
            received_at=created,
            raw=raw,
            body_sha256=hashlib.sha256(raw).hexdigest(),
            status="accepted",
            message_type="ADT^A08",
            control_id=cid,
            version="2.5.1",
            patient_id=keys[0].split(":")[-1],
        )
        .returning(messages.c.id)
    ).scalar_one()
    item = conn.execute(
        insert(work_items)
        .values(
            message_id=mid,
            channel=channel,
            destination="chart",
            key=keys[0],
            status="pending",
            attempts=0,
            next_attempt_at=created,
            created_at=created,
            updated_at=created,
        )
        .returning(work_items.c.id)
    ).scalar_one()
    conn.execute(insert(work_keys), [{"item_id": item, "key": k} for k in keys])
    if status == "error":
        workqueue.mark_error(
            conn, item, mid, created, 1, "PID-7: 19840399 is not a date", "invalid_value", "PID-7"
        )
    elif status == "held":
        workqueue.mark_held(conn, item, created, 1, 60, "patient 100009 is not known yet", "unknown_patient")
    elif status == "done":
        workqueue.mark_done(conn, item, mid, created, 1)
    return item


def done(conn, item_id: int, now: datetime) -> None:
    mid = conn.execute(select(work_items.c.message_id).where(work_items.c.id == item_id)).scalar_one()
    workqueue.mark_done(conn, item_id, mid, now, 2)


# -- the store ------------------------------------------------------------------------------------


def test_waiting_behind_counts_later_unfinished_items_on_any_key(engine):
    """An item counts the later unfinished items sharing any of its keys, each once (a merge's
    two keys), not earlier ones, not finished or held ones, not other patients'."""
    with engine.begin() as conn:
        first = add_item(conn, ["mrn:1"], status="error")
        a = add_item(conn, ["mrn:1"])
        merge = add_item(conn, ["mrn:1", "mrn:2"])  # a merge: both patients wait for it
        b = add_item(conn, ["mrn:2"])
        c = add_item(conn, ["mrn:1"])
        add_item(conn, ["mrn:1"], status="done")  # finished: waits for nothing
        held = add_item(conn, ["mrn:1"], status="held")  # gave its keys up
        other = add_item(conn, ["mrn:3"], status="error")
    with engine.connect() as conn:
        got = workqueue.waiting_behind(conn, [first, a, merge, b, c, held, other, 999999])
    # b waits behind the merge, which waits behind first: it counts on the merge (direct
    # sharers only), so first's count is a, merge and c
    assert got == {first: 3, a: 2, merge: 2, b: 0, c: 0, held: 0, other: 0, 999999: 0}
    with engine.connect() as conn:
        assert workqueue.waiting_behind(conn, []) == {}


def test_waiting_by_channel_counts_blocked_and_held_with_oldest(engine):
    """Blocked: unfinished items behind an item in error (any of its keys); held: items held.
    A queue that merely flows (pending behind pending) is neither."""
    with engine.begin() as conn:
        add_item(conn, ["mrn:1"], status="error", created=NOW)
        add_item(conn, ["mrn:1"], created=NOW + timedelta(minutes=1))
        add_item(conn, ["mrn:9", "mrn:1"], created=NOW + timedelta(minutes=2))  # merge behind it
        add_item(conn, ["mrn:5"])  # flows
        add_item(conn, ["mrn:5"])  # behind a pending one: not blocked
        add_item(conn, ["mrn:7"], status="held", channel="mdm", created=NOW - timedelta(hours=2))
        add_item(conn, ["mrn:8"], status="held", channel="mdm", created=NOW - timedelta(hours=1))
    with engine.connect() as conn:
        got = workqueue.waiting_by_channel(conn)
    assert set(got) == {"adt", "mdm"}
    assert (got["adt"].blocked, got["adt"].held) == (2, 0)
    assert got["adt"].oldest_blocked == NOW + timedelta(minutes=1)
    assert (got["mdm"].blocked, got["mdm"].held) == (0, 2)
    assert got["mdm"].oldest_held == NOW - timedelta(hours=2) == got["mdm"].oldest


# -- words ----------------------------------------------------------------------------------------


def test_words_for_codes():
    """HL7 tables 0001, 0004, 0270-0272, statuses and reasons read as words; unknown codes
    are shown as they are."""
    assert words.word("0001", "F") == "Female" and words.word("sex", "m") == "Male"
    assert words.word("0004", "I") == "Inpatient" and words.word("patient_class", "E") == "Emergency"
    assert words.word("0270", "DS") == "Discharge summary"
    assert words.word("0271", "LA") == "Legally authenticated"
    assert words.word("confidentiality", "V") == "Very restricted"
    assert words.word("0001", "Q") == "Q" and words.word("0001", None) == ""
    assert words.word("status", "held").startswith("Held")
    assert words.reason_text("unknown_patient") == "Unknown patient"
    assert "different patient" in words.reason_text("identity_mismatch")  # hl7.errors.REASONS
    assert words.reason_text("something_new") == "Something new"
    assert words.with_code("0001", "F") == "Female (F)" and words.with_code("0001", "Q") == "Q"


def test_one_time_format_in_the_hospital_zone(monkeypatch):
    """fmt_time shows every time in INTERFACE_TIMEZONE (UTC when unset or unknown); form
    values are read in that zone too."""
    t = datetime(2026, 1, 15, 22, 30, tzinfo=timezone.utc)
    monkeypatch.delenv(pages.TIMEZONE_ENV, raising=False)
    assert pages.fmt_time(t) == "2026-01-15 22:30:00 UTC"
    monkeypatch.setenv(pages.TIMEZONE_ENV, "Europe/Paris")
    assert pages.fmt_time(t) == "2026-01-15 23:30:00 CET"
    assert pages.fmt_time(t.replace(tzinfo=None)) == "2026-01-15 23:30:00 CET"  # SQLite: naive UTC
    assert pages.fmt_time(datetime(2026, 7, 1, 12, tzinfo=timezone.utc)) == "2026-07-01 14:00:00 CEST"
    assert pages._parse_dt("2026-01-15T23:30", "since") == t
    monkeypatch.setenv(pages.TIMEZONE_ENV, "Mars/Olympus")
    assert pages.fmt_time(t).endswith("UTC")


# -- API ------------------------------------------------------------------------------------------


@pytest.fixture
def clock():
    return Clock(NOW + timedelta(hours=1))


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


@pytest.fixture
def app(engine, clock):
    return create_app(engine, channels=[], clock=clock)


@pytest.fixture
def token(engine):
    with engine.begin() as conn:
        users.add_user(conn, "clara", "clerk", PASSWORD, now=NOW)
        return {"Authorization": f"Bearer {users.new_token(conn, 'clara', now=NOW)}"}


@pytest.fixture
def queue(engine):
    """adt: an error with two items behind it; mdm: one held item; lab: flowing."""
    with engine.begin() as conn:
        ids = {
            "error": add_item(conn, ["mrn:100001"], status="error", cid="E1"),
            "behind1": add_item(conn, ["mrn:100001"], created=NOW + timedelta(minutes=10), cid="B1"),
            "behind2": add_item(conn, ["mrn:100001"], created=NOW + timedelta(minutes=20), cid="B2"),
            "held": add_item(conn, ["mrn:100009"], status="held", channel="mdm", cid="H1"),
            "flowing": add_item(
                conn, ["mrn:100005"], channel="lab", created=NOW + timedelta(hours=1), cid="L1"
            ),
        }
    return ids


def test_api_errors_fields_and_default_listing(app, token, queue):
    """The default listing has the failed and the held items, each with waiting_behind and
    words; ``status`` filters; the detail has the count too."""
    with TestClient(app) as c:
        items = c.get("/api/errors", headers=token).json()["items"]
        assert [i["id"] for i in items] == [queue["held"], queue["error"]]
        err = items[1]
        assert err["waiting_behind"] == 2 and err["reason_text"] == "Invalid value"
        assert (
            err["status_text"] == "Failed: needs a clerk" and err["last_error"] and err["past_error"] is None
        )
        assert items[0]["status"] == "held" and items[0]["reason_text"] == "Unknown patient"
        held_only = c.get("/api/errors", params={"status": "held"}, headers=token).json()["items"]
        assert [i["id"] for i in held_only] == [queue["held"]]
        pending = c.get("/api/errors", params={"status": "pending"}, headers=token).json()["items"]
        assert {i["id"]: i["waiting_behind"] for i in pending} == {
            queue["behind1"]: 1,
            queue["behind2"]: 0,
            queue["flowing"]: 0,
        }
        d = c.get(f"/api/errors/{queue['error']}", headers=token).json()
        assert d["waiting_behind"] == 2 and d["history"][0]["outcome"] == "error"


def test_api_channels_degraded_with_blocked_and_held(app, token, queue, clock):
    """A channel with items blocked behind an error, or held, is degraded with the counts and
    the oldest age; a flowing channel is ok."""
    with TestClient(app) as c:
        chans = {ch["name"]: ch for ch in c.get("/api/channels", headers=token).json()["channels"]}
    adt_, mdm, lab = chans["adt"], chans["mdm"], chans["lab"]
    assert (adt_["state"], adt_["blocked"], adt_["held"]) == ("degraded", 2, 0)
    assert adt_["oldest_blocked_age_seconds"] == pytest.approx(50 * 60)
    assert (mdm["state"], mdm["blocked"], mdm["held"]) == ("degraded", 0, 1)
    assert mdm["oldest_held_age_seconds"] == pytest.approx(3600)
    assert (lab["state"], lab["blocked"], lab["held"]) == ("ok", 0, 0)


def test_api_fixed_item_is_done_with_its_error_in_history(app, engine, token, queue, clock):
    """Retried and then done: last_error is no longer the current state; past_error and the
    history keep it."""
    with engine.begin() as conn:
        errorqueue.retry_item(conn, queue["error"], user="clara", now=clock.now)
        done(conn, queue["error"], clock.now)
    with TestClient(app) as c:
        d = c.get(f"/api/errors/{queue['error']}", headers=token).json()
    assert d["status"] == "done" and d["status_text"] == "Done"
    assert d["last_error"] is None and "not a date" in d["past_error"]
    assert [h["outcome"] for h in d["history"]] == ["error", "done"]


# -- console --------------------------------------------------------------------------------------


def login(c: TestClient, name: str) -> str:
    form = c.get("/login").text
    token = re.search(r'name="login_token" value="([^"]+)"', form).group(1)
    r = c.post(
        "/login", data={"username": name, "password": PASSWORD, "login_token": token}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    return c.get("/api/me").json()["csrf_token"]


@pytest.fixture
def clerk(app, token):
    with TestClient(app) as c:
        c.csrf = login(c, "clara")
        yield c


def rows_of(page: str) -> dict[int, str]:
    body = page.split('id="error-list"', 1)[1]
    return {int(i): row for i, row in re.findall(r'<tr data-item="(\d+)"[^>]*>(.*?)</tr>', body, re.S)}


def test_console_lists_held_by_default_with_waiting_behind_and_words(clerk, queue):
    """/errors shows failed and held items by default; the failed one says how many wait
    behind it; reasons and statuses in words, the failing field named; the filter narrows."""
    page = clerk.get("/errors").text
    rows = rows_of(page)
    assert set(rows) == {queue["error"], queue["held"]}
    err, held = rows[queue["error"]], rows[queue["held"]]
    assert re.search(r'class="waiting-behind"><strong>2</strong>', err)
    assert "Invalid value" in err and "Date Time of Birth" in err and "Failed: needs a clerk" in err
    assert "Held: waiting for the patient" in held and "Unknown patient" in held
    assert 'class="waiting-behind">0<' in held
    assert "Unknown patient <span" in page  # the group by reason, in words
    assert '<option value="error,held" selected>Failed or held</option>' in page
    only = rows_of(clerk.get("/errors", params={"status": "error"}).text)
    assert set(only) == {queue["error"]}
    only = rows_of(clerk.get("/errors", params={"status": "held"}).text)
    assert set(only) == {queue["held"]}


def test_console_fixed_item_shows_done_with_past_error(clerk, engine, queue, clock):
    """After a retry that succeeded the list and the item page say done; the old error is
    history (failed at ..., fixed by ... at ...), not the current error."""
    r = clerk.post(f"/errors/{queue['error']}/retry", data={"csrf_token": clerk.csrf}, follow_redirects=False)
    assert r.status_code == 303
    with engine.begin() as conn:
        done(conn, queue["error"], clock.now)
    row = rows_of(clerk.get("/errors", params={"status": "done"}).text)[queue["error"]]
    assert "current-error" not in row and 'class="past-error' in row
    assert (
        "Failed at 2026-11-22 12:00:00 UTC" in row
        and "fixed by clara (retry) at 2026-11-22 13:00:00 UTC" in row
    )
    assert ">Done<" in row
    page = clerk.get(f"/errors/{queue['error']}").text
    assert 'id="last-error"' not in page and "status-done" in page
    past = re.search(r'id="past-error">(.*?)</p>', page, re.S).group(1)
    assert "Failed at 2026-11-22 12:00:00 UTC" in past and "not a date" in past
    assert "Fixed by clara (retry) at 2026-11-22 13:00:00 UTC; now done." in page


def test_console_still_failing_item_shows_its_error_as_current(clerk, queue):
    page = clerk.get(f"/errors/{queue['error']}").text
    assert 'id="last-error"' in page and 'id="past-error"' not in page


def test_dashboard_shows_degraded_with_counts_and_age(clerk, queue, monkeypatch):
    """A channel with blocked or held items is not OK: degraded, the count and the oldest age;
    times in the configured zone."""
    monkeypatch.setenv(pages.TIMEZONE_ENV, "Europe/Paris")
    page = clerk.get("/dashboard/channels").text
    cards = dict(re.findall(r'data-health="\w+" data-channel="(\w+)">(.*?)</article>', page, re.S))
    assert "Needs attention" in cards["adt"] and "2 blocked behind an error, oldest 50 min" in cards["adt"]
    assert "Degraded" in cards["mdm"] and "1 held for an unknown patient, oldest 60 min" in cards["mdm"]
    assert 'class="held"><a href="/errors?status=held&amp;channel=mdm">1</a>' in cards["mdm"]
    assert ">OK<" in cards["lab"] and "Degraded" not in cards["lab"]
    assert re.findall(r'data-health="(\w+)" data-channel="(\w+)"', page) == [
        ("degraded", "adt"),
        ("ok", "lab"),
        ("degraded", "mdm"),
    ]
    assert "Times in CET." in clerk.get("/").text


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_errors_list_shows_waiting_behind_and_held(db_url, engine, queue, capsys):
    """``interface errors list``: held items by default, each with its waiting-behind count."""
    assert cli.main(["errors", "list", "--db", db_url]) == 0
    out, err = capsys.readouterr()
    lines = {int(line.split("\t")[0]): line.split("\t") for line in out.splitlines()}
    assert set(lines) == {queue["error"], queue["held"]}
    assert lines[queue["error"]][6] == "2 waiting" and lines[queue["held"]][3] == "held"
    assert "2 item(s), 1 held" in err
    assert cli.main(["errors", "list", "--db", db_url, "--status", "pending", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[queue["behind1"]]["waiting_behind"] == 1 and rows[queue["flowing"]]["waiting_behind"] == 0
