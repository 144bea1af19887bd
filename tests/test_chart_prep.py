"""The chart-prep worklist: each kind of problem (deficiencies, missing consent, insurance
missing / without policy number / expired / without subscriber, identity items), the window,
cancelled and no-show appointments left out; the API, the console page and ``interface
chart-prep``, each on an injected clock; views audited."""

from __future__ import annotations

import io
import json
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

with warnings.catch_warnings():
    # This starlette warns at import that it prefers the httpx2 package; the client works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from interface.desk import users
from interface.desk.chart_prep import cli_main, worklist
from interface.rules.chart_prep import ChartPrepSettings, load_settings
from interface.store.schema import audit, work_items
from interface.web.app import create_app
from tests.test_adt_events import ROOT, Harness, adt
from tests.test_appointments import siu
from tests.test_deficiencies_cli import mdm

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery staple"
SIGNED = dict(status="AU", author="77^BROWN^ANN", auth="77^BROWN^ANN^^^^^^^^^^^^20261120095500")


def in1(
    plan: str = "GOLD^Gold PPO",
    *,
    expires: str = "20271231",
    insured: str = "CHEN^WEI",
    rel: str = "SEL",
    policy: str = "POL-1",
) -> str:
    f = [""] * 37
    f[0], f[1], f[2], f[3], f[4], f[12], f[13], f[16], f[17], f[36] = (
        "IN1",
        "1",
        plan,
        "INS01",
        "ACME HEALTH",
        "20260101",
        expires,
        insured,
        rel,
        policy,
    )
    return "|".join(f)


def at(days: float, hour: int = 7) -> str:
    return (NOW + timedelta(days=days)).replace(hour=hour, minute=0).strftime("%Y%m%d%H%M%S")


@pytest.fixture
def h(engine) -> Harness:
    h = Harness(engine)
    h.now = NOW - timedelta(days=1)
    # 100002: a ready chart (insurance in order, a signed consent, no findings)
    h.send(adt("A28", "100002", name="CHEN^WEI", dob="19571102", sex="M", extra=(in1(),)))
    # 100003: no insurance, no consent, a note without author (an open deficiency)
    h.send(adt("A28", "100003", name="NGUYEN^LINH", dob="19910704", sex="F"))
    # 100004: a plan without policy number, expired before the appointment, without subscriber
    h.send(
        adt(
            "A28",
            "100004",
            name="OKAFOR^EMEKA",
            dob="19700101",
            sex="M",
            extra=(in1("SILVER^Silver HMO", expires="20261206", insured="", rel="", policy=""),),
        )
    )
    h.drain()
    h.send(mdm("T02", "C-2", mrn="100002", type_="CN", **SIGNED), "mdm")
    h.send(mdm("T02", "C-4", mrn="100004", type_="CONSENT", **SIGNED), "mdm")
    h.send(mdm("T02", "N-3", mrn="100003"), "mdm")  # no author: author_present
    h.drain()
    h.send(siu("S12", "A2", mrn="100002", start=at(2)), "siu")
    h.send(siu("S12", "A3", mrn="100003", start=at(3)), "siu")
    h.send(siu("S12", "A3-LATER", mrn="100003", start=at(10)), "siu")  # outside 7 days
    h.send(siu("S12", "A3-PAST", mrn="100003", start=at(-1)), "siu")  # before now
    h.send(siu("S12", "A3-CANCEL", mrn="100003", start=at(4)), "siu")
    h.send(siu("S15", "A3-CANCEL", mrn="100003", start="", minutes=""), "siu")
    h.send(siu("S12", "A3-NOSHOW", mrn="100003", start=at(1)), "siu")
    h.send(siu("S26", "A3-NOSHOW", mrn="100003", start="", minutes=""), "siu")
    h.send(siu("S12", "A4", mrn="100004", start=at(6)), "siu")
    h.drain()
    assert h.items("error") == [] and h.items("held") == []
    h.now = NOW
    return h


def prep(h: Harness, **kw) -> dict:
    with h.db.connect() as conn:
        return worklist(conn, now=h.now, **kw)


def by_filler(result: dict) -> dict[str, dict]:
    return {i["appointment"]["filler_id"]: i for i in result["items"]}


def kinds(item: dict) -> list[str]:
    return [p["kind"] for p in item["problems"]]


def test_a_ready_chart_is_not_listed_and_each_problem_kind_is(h):
    result = prep(h, days=7)
    items = by_filler(result)
    assert set(items) == {"A3", "A4"}  # A2 (Chen) is ready
    assert result["appointments"] == 3  # A2, A3, A4: booked in the window
    a3 = items["A3"]
    assert list(dict.fromkeys(kinds(a3))) == ["deficiency", "consent", "insurance"]
    assert "author" in a3["problems"][0]["text"] and "N-3" in a3["problems"][0]["text"]
    assert a3["problems"][-1]["text"] == "No insurance on file"
    assert a3["patient"] == {
        "mrn": "100003",
        "known": True,
        "family": "NGUYEN",
        "given": "LINH",
        "birth_date": "1991-07-04",
        "sex": "female",
    }
    texts = [p["text"] for p in items["A4"]["problems"]]
    assert kinds(items["A4"]) == ["insurance"] * 3
    assert any("no policy number" in t for t in texts)
    assert any("expired on 2026-12-06" in t for t in texts)
    assert any("no subscriber" in t for t in texts)


def test_expiry_is_judged_against_the_appointment_date(h):
    h.send(siu("S13", "A4", mrn="100004", start=at(0, hour=12)), "siu")  # moved to today (Dec 5)
    h.drain()
    texts = [p["text"] for p in by_filler(prep(h, days=7))["A4"]["problems"]]
    assert not any("expired" in t for t in texts) and len(texts) == 2


def test_the_window(h):
    assert set(by_filler(prep(h, days=2))) == set()  # A2 (day 2, ready) only
    assert set(by_filler(prep(h, days=3))) == {"A3"}
    assert set(by_filler(prep(h, days=14))) == {"A3", "A3-LATER", "A4"}
    later = prep(h, days=3, start=NOW + timedelta(days=7))
    assert set(by_filler(later)) == {"A3-LATER"}
    assert prep(h)["days"] == 7  # the settings' default


def test_cancelled_and_no_show_appointments_are_left_out(h):
    ids = set(by_filler(prep(h, days=7, start=NOW - timedelta(days=2))))
    assert "A3-CANCEL" not in ids and "A3-NOSHOW" not in ids and "A3-PAST" in ids


def test_pending_counts_and_statuses_come_from_the_settings(h):
    h.send(siu("S14", "A3", mrn="100003", status="Waitlist", start="", minutes=""), "siu")
    h.drain()
    assert "A3" not in by_filler(prep(h, days=7))
    wide = ChartPrepSettings(statuses=["booked", "waitlist"])
    assert "A3" in by_filler(prep(h, days=7, settings=wide))


def test_consent_types_are_a_setting(h):
    only_cn = ChartPrepSettings(consent_types=["CN"])
    assert "consent" in kinds(by_filler(prep(h, days=7, settings=only_cn))["A4"])


def test_a_consent_that_was_cancelled_does_not_count(h):
    h.send(mdm("T11", "C-4", mrn="100004", type_="CONSENT", **SIGNED).replace("|AV|AC|", "|CA|AC|"), "mdm")
    h.drain()
    assert "consent" in kinds(by_filler(prep(h, days=7))["A4"])


def test_identity_items_for_the_patient(h):
    h.send(mdm("T02", "X-1", mrn="100099", **SIGNED), "mdm")  # unknown patient: held
    h.drain()
    [held] = h.items("held")
    assert held.reason == "unknown_patient"
    h.send(siu("S12", "A99", mrn="100002", start=at(1)), "siu")
    h.drain()
    with h.db.begin() as conn:  # as the identity checks would file it: this MRN, another reason
        conn.execute(
            update(work_items)
            .where(work_items.c.id == held.id)
            .values(reason="identity_mismatch", status="error")
        )
        from interface.store.schema import messages

        conn.execute(update(messages).where(messages.c.id == held.message_id).values(patient_id="100002"))
    item = by_filler(prep(h, days=7))["A2"]
    assert kinds(item) == ["identity"] and f"item {held.id}" in item["problems"][0]["text"]
    with h.db.begin() as conn:
        conn.execute(update(work_items).where(work_items.c.id == held.id).values(status="discarded"))
    assert "A2" not in by_filler(prep(h, days=7))  # resolved: no longer a problem


def test_merged_patient_is_checked_under_the_survivor(h):
    h.send(adt("A40", "100002", mrg="100003", name="CHEN^WEI", dob="19571102", sex="M", extra=(in1(),)))
    h.drain()
    items = by_filler(prep(h, days=7))
    assert items["A3"]["patient"]["mrn"] == "100002"  # the chart the appointment now belongs to
    assert "consent" not in kinds(items["A3"])  # the survivor's consent is on file


def test_days_out_of_range_is_refused(h):
    with pytest.raises(ValueError):
        prep(h, days=400)


def test_settings_file_is_valid_and_checked(tmp_path):
    s = load_settings(ROOT / "rules" / "chart_prep.yaml")
    assert s == ChartPrepSettings()
    from interface.ops.cli import check_config

    assert check_config([str(ROOT / "channels"), str(ROOT / "mappings"), str(ROOT / "rules")]) == []
    bad = tmp_path / "rules"
    bad.mkdir()
    (bad / "chart_prep.yaml").write_text("version: 1\nconsent_typs: [CN]\ndefault_days: -1\n")
    problems = check_config([str(bad)])
    assert any(":2: unknown key 'consent_typs'" in p for p in problems)
    assert any(":3:" in p and "default_days" in p for p in problems)


# -- the terminal ------------------------------------------------------------------------------


def test_cli_table_and_json(h):
    out = io.StringIO()
    assert cli_main(["--days", "7"], h.db, now=NOW, out=out) == 0
    text = out.getvalue()
    assert "2 of 3 appointment(s)" in text and "NGUYEN, LINH  born 1991-07-04  female  MRN 100003" in text
    assert "Missing consent: No consent document on file" in text
    out = io.StringIO()
    assert cli_main(["--days", "14", "--from", "2026-12-05", "--json"], h.db, now=NOW, out=out) == 0
    data = json.loads(out.getvalue())
    assert {i["appointment"]["filler_id"] for i in data["items"]} == {"A3", "A3-LATER", "A4"}


def test_cli_refuses_bad_options(h, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--days", "999"], h.db, now=NOW, out=io.StringIO())
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        cli_main(["--from", "next week"], h.db, now=NOW, out=io.StringIO())


def test_interface_chart_prep_command(h, db_url, capsys, monkeypatch):
    from interface.ops import cli

    monkeypatch.chdir(ROOT)
    assert cli.main(["chart-prep", "--db", db_url, "--days", "366", "--from", "2026-12-01", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"A3", "A4"} <= {i["appointment"]["filler_id"] for i in data["items"]}


# -- API and console ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


def token(db, name: str, role: str) -> str:
    with db.begin() as conn:
        users.add_user(conn, name, role, PASSWORD, now=NOW)
        return users.new_token(conn, name, now=NOW)


@pytest.fixture
def client(h):
    app = create_app(h.db, channels=list(h.channels.values()), clock=lambda: NOW)
    with TestClient(app) as c:
        c.tokens = {r: token(h.db, r + "1", r) for r in ("clerk", "analyst", "admin")}
        yield c


def bearer(c, role: str) -> dict:
    return {"Authorization": f"Bearer {c.tokens[role]}"}


def audits(h: Harness) -> list:
    with h.db.connect() as conn:
        return conn.execute(
            select(audit).where(audit.c.target_type == "chart_prep").order_by(audit.c.id)
        ).all()


def test_api_chart_prep(client, h):
    r = client.get("/api/chart-prep", params={"days": 7}, headers=bearer(client, "clerk"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["from"] == NOW.isoformat() and body["days"] == 7 and body["appointments"] == 3
    assert {i["appointment"]["filler_id"] for i in body["items"]} == {"A3", "A4"}
    a3 = next(i for i in body["items"] if i["appointment"]["filler_id"] == "A3")
    assert a3["appointment"]["status_label"] == "Booked" and a3["patient"]["family"] == "NGUYEN"
    seen = audits(h)  # one entry per patient the worklist listed (the access report's rows)
    assert {a.user for a in seen} == {"clerk1"} and {a.action for a in seen} == {"view"}
    assert sorted(a.patient for a in seen) == sorted({i["patient"]["mrn"] for i in body["items"]})
    assert {a.via for a in seen} == {"api"}
    r = client.get(
        "/api/chart-prep", params={"days": 7, "start": "2026-12-12"}, headers=bearer(client, "admin")
    )
    assert {i["appointment"]["filler_id"] for i in r.json()["items"]} == {"A3-LATER"}


def test_api_chart_prep_roles_and_validation(client):
    assert client.get("/api/chart-prep").status_code == 401
    assert client.get("/api/chart-prep", headers=bearer(client, "analyst")).status_code == 403
    assert (
        client.get("/api/chart-prep", params={"days": 999}, headers=bearer(client, "clerk")).status_code
        == 422
    )
    assert (
        client.get("/api/chart-prep", params={"start": "soon"}, headers=bearer(client, "clerk")).status_code
        == 422
    )
    assert "/api/chart-prep" in client.app.openapi()["paths"]


def test_console_page(client, h):
    headers = {**bearer(client, "clerk"), "accept": "text/html"}
    page = client.get("/chart-prep", params={"days": "7"}, headers=headers)
    assert page.status_code == 200, page.text
    html = page.text
    assert "NGUYEN, LINH" in html and "1991-07-04" in html and "female" in html and "100003" in html
    assert "Missing consent" in html and "No insurance on file" in html and "no policy number" in html
    assert "CHEN" not in html  # the ready chart is not listed
    assert 'href="/chart-prep"' in html  # the nav link
    assert audits(h)[-1].user == "clerk1"
    bad = client.get("/chart-prep", params={"days": "lots"}, headers=headers)
    assert bad.status_code == 400 and "Days must be a number" in bad.text
    assert client.get("/chart-prep", params={"start": "12/12"}, headers=headers).status_code == 400
    assert (
        client.get("/chart-prep", headers={**bearer(client, "analyst"), "accept": "text/html"}).status_code
        == 403
    )
