"""Chart completion as HIM runs it: findings assigned to a responsible clinician (author,
authenticator or attending by rule, with fallback), aged into buckets with a bylaws limit,
waived with a reason (kept when the same deficiency recurs), rolled up per clinician and per
service, and sent to each clinician as a digest without patient data."""

from __future__ import annotations

import io
import json
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from interface.desk import users
from interface.ops.alert_rules import build_dispatcher, digest_notifier_name, load_alerts
from interface.ops.alerts import Evaluator
from interface.ops.runtime import Runtime
from interface.rules import completeness as c
from interface.store.deficiencies import DeficiencyError, cli_main, list_deficiencies, summarize, waive
from interface.store.schema import audit, events
from interface.web.app import create_app
from interface.web.auth import COOKIE
from tests.test_adt_events import Harness, adt

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
PATIENT_DATA = ("100001", "DOE", "JANE", "D-OP", "D-NOAUTH", "D-SIGNED", "Report text")


# -- the rules (pure) ---------------------------------------------------------------------------


def test_assignment_falls_back_author_authenticator_attending():
    author = {"id": "1234", "family": "SMITH", "given": "JOHN"}
    signer = {"id": "77", "family": "BROWN", "given": "ANN"}
    attending = {"id": "D9", "family": "HOUSE", "given": "GREG"}
    full = {"author": author, "authenticated_by": signer}
    assert c.assign("author", full, attending) == {"role": "author", "id": "1234", "name": "SMITH, JOHN"}
    assert c.assign("authenticator", full, attending)["id"] == "77"
    assert c.assign("attending", full, attending) == {"role": "attending", "id": "D9", "name": "HOUSE, GREG"}
    assert c.assign("attending", full, None)["role"] == "author"  # no visit: the author
    assert c.assign("author", {"authenticated_by": signer}, attending)["role"] == "authenticator"
    assert c.assign("author", {"author": {"id": "", "family": ""}}, attending)["role"] == "attending"
    assert c.assign("authenticator", {}, None) is None


def test_buckets_and_delinquency_with_an_injected_now():
    start = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    at = lambda days, **kw: c.age(start.isoformat(), start + timedelta(days=days), **kw)  # noqa: E731
    assert [at(d)["bucket"] for d in (0, 7, 7.9, 8, 14, 15, 30, 30.5, 31, 400)] == [
        "0-7", "0-7", "0-7", "8-14", "8-14", "15-30", "15-30", "15-30", "over 30", "over 30",
    ]  # fmt: skip
    assert at(30)["delinquent"] is False and at(30.01)["delinquent"] is True
    assert at(10, bylaws_days=9)["delinquent"] is True and at(10, bylaws_days=14)["delinquent"] is False
    assert at(12)["days"] == 12
    assert c.age(None, start) == {"days": 0, "bucket": "0-7", "delinquent": False}
    assert c.age((start + timedelta(days=2)).isoformat(), start)["days"] == 0  # a future start


def test_rules_file_names_responsible_and_bylaws(tmp_path):
    rules = c.load_rules("rules/completeness.yaml")
    assert rules.bylaws_days == 30
    by_id = {r.id: r.responsible for r in rules.rules}
    assert by_id["signed_needs_signer"] == "authenticator" and by_id["operative_needs_consent"] == "attending"
    assert by_id["author_present"] == "author"
    bad = tmp_path / "r.yaml"
    bad.write_text("version: 1\nbylaws_days: 0\nrules:\n  - id: x\n    description: d\n    require: [author]\n"
                   "    responsible: surgeon\n")  # fmt: skip
    problems = c.check_paths([bad])
    assert any("bylaws_days" in p for p in problems) and any("responsible" in p for p in problems)
    entry = {"document_number": "D", "origination_at": "2026-11-20T09:15:00+00:00", "author": None}
    (f,) = c.evaluate(rules, entry, [])[:1]
    assert f["responsible"] == "author" and f["started_at"] == "2026-11-20T09:15:00+00:00"


# -- the store, through the real engine -------------------------------------------------------------


def pv1(visit: str = "V1", attending: str = "D9^HOUSE^GREG", service: str = "SUR") -> str:
    f = [""] * 20
    f[0], f[1], f[2], f[3], f[7], f[10] = "PV1", "1", "I", "4W^101^A^HOSP", attending, service
    f[19] = f"{visit}^^^HOSP^VN"
    return "|".join(f)


def mdm(event, number, *, status="DI", author="", auth="", type_="HP", time="20261120100000", visit="V1"):
    txa = ["TXA", "1", type_, "TX", "20261120090000", "", "20261120091500", "", "", author, "", "", number,
           "", "", "", "", status, "U", "AV", "AC", "", auth]  # fmt: skip
    segs = [
        f"MSH|^~\\&|DOCS|HOSP|IF|HOSP|{time}||MDM^{event}|{number}{event}{time}|P|2.5.1",
        f"EVN|{event}|{time}",
        "PID|1||100001^^^HOSP^MR||DOE^JANE",
        pv1(visit),
        "|".join(txa),
        "OBX|1|TX|HP||Report text||||||F",
    ]
    return "\r".join(segs) + "\r"


@pytest.fixture
def h(engine) -> Harness:
    h = Harness(engine)
    h.send(adt("A01", "100001", pv1_=pv1()))
    h.send(mdm("T02", "D-OP", type_="OP", author="1234^SMITH^JOHN"), "mdm")  # no consent: attending
    h.send(mdm("T02", "D-NOAUTH"), "mdm")  # no author, not signed: falls back to the attending
    h.send(mdm("T02", "D-SIGNED", status="AU", author="1234^SMITH^JOHN"), "mdm")  # no TXA-22: author
    h.drain()
    assert h.items("error") == [] and h.items("held") == []
    return h


def rows(h, days: float = 0, **kw) -> list[dict]:
    with h.db.connect() as conn:
        return list_deficiencies(conn, now=h.now + timedelta(days=days), **kw)


def by_key(rs) -> dict:
    return {(r["document_number"], r["rule"]): r for r in rs}


def test_findings_name_the_responsible_clinician_and_service(h):
    found = by_key(rows(h))
    assert set(found) == {
        ("D-OP", "operative_needs_consent"),
        ("D-NOAUTH", "author_present"),
        ("D-SIGNED", "signed_needs_signer"),
    }
    assert found[("D-OP", "operative_needs_consent")]["responsible"] == {
        "role": "attending", "id": "D9", "name": "HOUSE, GREG"}  # fmt: skip
    assert found[("D-NOAUTH", "author_present")]["responsible"]["role"] == "attending"
    assert found[("D-SIGNED", "signed_needs_signer")]["responsible"] == {
        "role": "author", "id": "1234", "name": "SMITH, JOHN"}  # fmt: skip
    assert {r["service"] for r in found.values()} == {"SUR"}
    r = found[("D-SIGNED", "signed_needs_signer")]
    assert r["started_at"].startswith("2026-11-20T09:15") and r["bucket"] == "0-7" and not r["delinquent"]
    assert {x["document_number"] for x in rows(h, clinician="d9")} == set()  # ids match exactly
    assert {x["document_number"] for x in rows(h, clinician="D9")} == {"D-OP", "D-NOAUTH"}
    assert {x["document_number"] for x in rows(h, clinician="smith, john")} == {"D-SIGNED"}
    assert len(rows(h, service="sur")) == 3 and rows(h, service="MED") == []


def test_aging_buckets_and_delinquent_over_time(h):
    # origination 2026-11-20 09:15; the harness clock is 2026-11-22 12:00
    assert {r["bucket"] for r in rows(h, days=10)} == {"8-14"}
    assert {r["bucket"] for r in rows(h, days=20)} == {"15-30"}
    late = rows(h, days=30)
    assert {r["bucket"] for r in late if r["rule"] != "unsigned_overdue"} == {"over 30"}
    assert all(r["delinquent"] for r in late)
    assert rows(h, days=30, bylaws_days=60, delinquent=True) == []
    assert {r["rule"] for r in rows(h, days=20, bucket="15-30")} >= {"author_present"}


def test_waive_keeps_the_finding_visible_and_survives_recurrence(h):
    signed = by_key(rows(h))[("D-SIGNED", "signed_needs_signer")]
    with h.db.begin() as conn:
        with pytest.raises(DeficiencyError) as exc:
            waive(conn, signed["id"], user="carl", reason="  ", now=h.now)
        assert exc.value.status == 400
        with pytest.raises(DeficiencyError) as exc:
            waive(conn, 10**9, user="carl", reason="x", now=h.now)
        assert exc.value.status == 404
        waive(conn, signed["id"], user="carl", reason="signed on paper, scanned", now=h.now)
    with h.db.begin() as conn, pytest.raises(DeficiencyError) as exc:
        waive(conn, signed["id"], user="carl", reason="again", now=h.now)
    assert exc.value.status == 409
    assert ("D-SIGNED", "signed_needs_signer") not in by_key(rows(h))
    (w,) = rows(h, status="waived")
    assert w["id"] == signed["id"] and w["waived"]["by"] == "carl"
    assert w["waived"]["reason"] == "signed on paper, scanned"
    assert len(rows(h, status="all")) == 3
    with h.db.connect() as conn:
        (a,) = conn.execute(select(audit).where(audit.c.action == "waive_deficiency")).all()
    assert (a.user, a.target_type, a.target_id, a.reason) == (
        "carl",
        "document",
        "D-SIGNED",
        w["waived"]["reason"],
    )
    # a new version without TXA-22 again: the same deficiency, still waived (same row kept)
    h.send(mdm("T08", "D-SIGNED", status="AU", author="1234^SMITH^JOHN", time="20261121100000"), "mdm")
    h.drain()
    assert h.items("error") == []
    (w2,) = rows(h, status="waived")
    assert w2["id"] == signed["id"] and w2["waived"]["reason"] == "signed on paper, scanned"
    # fixed, then broken again: the waiver (keyed by document and rule) still applies
    h.send(
        mdm("T08", "D-SIGNED", status="AU", author="1234^SMITH^JOHN", auth="77^BROWN^ANN^^^^^^^^^^^^20261121115500",
            time="20261121120000"),
        "mdm",
    )  # fmt: skip
    h.drain()
    assert rows(h, status="waived") == [] and ("D-SIGNED", "signed_needs_signer") not in by_key(rows(h))
    h.send(
        mdm("T08", "D-SIGNED", status="AU", author="1234^SMITH^JOHN", auth='""', time="20261121130000"), "mdm"
    )
    h.drain()
    assert [r["document_number"] for r in rows(h, status="waived")] == ["D-SIGNED"]


def test_summary_per_clinician_and_service(h):
    with h.db.begin() as conn:
        noauth = by_key(list_deficiencies(conn, now=h.now))[("D-NOAUTH", "author_present")]
        waive(conn, noauth["id"], user="carl", reason="duplicate dictation", now=h.now)
    with h.db.connect() as conn:
        clin = {g["key"]: g for g in summarize(conn, "clinician", h.now + timedelta(days=10))}
        serv = summarize(conn, "service", h.now + timedelta(days=40))
    assert clin["D9"]["name"] == "HOUSE, GREG" and (clin["D9"]["open"], clin["D9"]["waived"]) == (1, 1)
    assert clin["D9"]["buckets"] == {"0-7": 0, "8-14": 1, "15-30": 0, "over 30": 0}
    assert clin["1234"]["open"] == 1 and clin["1234"]["delinquent"] == 0
    (s,) = serv
    assert s["key"] == "SUR" and s["open"] == 4  # + unsigned_overdue on D-OP, due after 14 days
    assert s["buckets"]["over 30"] == 4 and s["delinquent"] == 4 and s["waived"] == 1


# -- CLI ----------------------------------------------------------------------------------------


def cli(h, *argv, days=0):
    out = io.StringIO()
    assert cli_main(list(argv), h.db, now=h.now + timedelta(days=days), out=out) == 0
    return out.getvalue()


def test_cli_summary_and_filters(h):
    data = json.loads(cli(h, "--summary", "clinician", "--json", "--bylaws-days", "5", days=10))
    assert {g["key"]: (g["open"], g["delinquent"]) for g in data} == {"D9": (2, 2), "1234": (1, 1)}
    table = cli(h, "--summary", "service", days=20).splitlines()
    assert table[0].split()[:4] == ["SERVICE", "NAME", "OPEN", "0-7"]
    # the three findings and, past 14 days, unsigned_overdue on the two unsigned documents
    assert table[1].split()[:3] == ["SUR", "SUR", "5"]
    listed = json.loads(cli(h, "--json", "--clinician", "D9"))
    assert {r["document_number"] for r in listed} == {"D-OP", "D-NOAUTH"}
    text = cli(h, "--service", "SUR", days=40)
    assert "HOUSE, GREG" in text and "over 30 delinquent" in text
    assert json.loads(cli(h, "--json", "--status", "waived")) == []


# -- API and console ------------------------------------------------------------------------------


@pytest.fixture
def app(h):
    return create_app(
        h.db,
        channels=list(h.channels.values()),
        runtime=Runtime(),
        document_settings=h.pipeline.document_settings,
        clock=h.clock,
    )


def session(h, client, name, role):
    with h.db.begin() as conn:
        users.add_user(conn, name, role, "correct horse battery staple", now=h.now)
        row = conn.execute(select(users.users).where(users.users.c.name == name)).one()
        sid, csrf = users.create_session(conn, users.User(row.id, row.name, row.role), h.now)
    client.cookies.set(COOKIE, sid)
    return csrf


@pytest.fixture
def clerk(h, app):
    with TestClient(app, base_url="http://testserver") as client:
        client.csrf = session(h, client, "carl", "clerk")
        yield client


def test_api_filters_summary_and_waive(h, clerk):
    got = clerk.get("/api/deficiencies", params={"clinician": "D9"}).json()
    assert got["total"] == 2 and {r["responsible"]["role"] for r in got["deficiencies"]} == {"attending"}
    assert clerk.get("/api/deficiencies", params={"service": "SUR", "bucket": "0-7"}).json()["total"] == 3
    assert clerk.get("/api/deficiencies", params={"bucket": "over 30"}).json()["total"] == 0
    assert clerk.get("/api/deficiencies", params={"bucket": "9-99"}).status_code == 422
    assert clerk.get("/api/deficiencies", params={"status": "closed"}).status_code == 422
    summ = clerk.get("/api/deficiencies/summary", params={"by": "clinician"}).json()
    assert summ["bylaws_days"] == 30 and {g["key"]: g["open"] for g in summ["groups"]} == {"D9": 2, "1234": 1}
    assert (
        clerk.get("/api/deficiencies/summary", params={"by": "service"}).json()["groups"][0]["key"] == "SUR"
    )
    assert clerk.get("/api/deficiencies/summary", params={"by": "ward"}).status_code == 422
    target = next(r for r in got["deficiencies"] if r["document_number"] == "D-NOAUTH")
    url = f"/api/deficiencies/{target['id']}/waive"
    hdr = {"x-csrf-token": clerk.csrf}
    assert clerk.post(url, json={}, headers=hdr).status_code == 422
    assert clerk.post(url, json={"reason": ""}, headers=hdr).status_code == 422
    assert clerk.post(url, json={"reason": "   "}, headers=hdr).status_code == 400
    assert clerk.post(url, json={"reason": "ok"}).status_code == 403  # no CSRF token
    assert clerk.post("/api/deficiencies/999999/waive", json={"reason": "x"}, headers=hdr).status_code == 404
    r = clerk.post(url, json={"reason": "dictated under the wrong visit"}, headers=hdr)
    assert r.status_code == 200 and r.json()["status"] == "waived"
    assert clerk.post(url, json={"reason": "again"}, headers=hdr).status_code == 409
    assert clerk.get("/api/deficiencies", params={"clinician": "D9"}).json()["total"] == 1
    (w,) = clerk.get("/api/deficiencies", params={"status": "waived"}).json()["deficiencies"]
    assert w["waived"]["by"] == "carl" and w["waived"]["reason"] == "dictated under the wrong visit"
    with h.db.connect() as conn:
        (a,) = conn.execute(select(audit).where(audit.c.action == "waive_deficiency")).all()
    assert (a.user, a.target_id, a.reason) == ("carl", "D-NOAUTH", "dictated under the wrong visit")


def test_api_waive_needs_a_clerk(h, app):
    with TestClient(app, base_url="http://testserver") as client:
        csrf = session(h, client, "ann", "analyst")
        r = client.post("/api/deficiencies/1/waive", json={"reason": "x"}, headers={"x-csrf-token": csrf})
        assert r.status_code == 403


def test_console_worklist_shows_responsible_age_and_waives(h, clerk):
    clerk.headers["accept"] = "text/html"
    page = clerk.get("/deficiencies", params={"clinician": "D9"}).text
    assert "HOUSE, GREG" in page and "attending doctor" in page and "0-7 days" in page
    assert 'class="inline waive"' in page and 'name="reason"' in page and "D-SIGNED" not in page
    assert 'id="summary-clinician"' in page and 'id="summary-service"' in page and "SMITH, JOHN" in page
    target = by_key(rows(h))[("D-OP", "operative_needs_consent")]
    back = "?clinician=D9&status=open"
    r = clerk.post(f"/deficiencies/{target['id']}/waive", data={"reason": "", "back": back,
                                                                 "csrf_token": clerk.csrf})  # fmt: skip
    assert r.status_code == 400 and "Give a reason" in r.text
    r = clerk.post(
        f"/deficiencies/{target['id']}/waive",
        data={"reason": "consent in paper chart", "back": back, "csrf_token": clerk.csrf},
        follow_redirects=False,
    )
    assert (
        r.status_code == 303 and r.headers["location"] == "/deficiencies?clinician=D9&status=open&done=waived"
    )
    page = clerk.get("/deficiencies", params={"status": "waived"}).text
    assert "consent in paper chart" in page and "D-OP" in page
    late = clerk.get("/deficiencies", params={"service": "SUR"})
    assert late.status_code == 200 and "D-NOAUTH" in late.text and "D-OP" not in late.text
    h.advance(timedelta(days=40).total_seconds())
    clerk.csrf = session(h, clerk, "cleo", "clerk")  # carl's session has expired meanwhile
    late = clerk.get("/deficiencies").text
    assert '<span class="badge bad">delinquent</span>' in late and "over 30 days" in late


# -- the digest -----------------------------------------------------------------------------------


class Fake:
    def __init__(self, name):
        self.name, self.sent = name, []

    def send(self, payload):
        self.sent.append(payload)


ALERTS = """\
console_url: http://console.example.org
notifiers:
  him-hook: {type: webhook, url: "https://hooks.example.org/him"}
  mail: {type: email, host: smtp.example.org, from: him@example.org, to: [him@example.org]}
rules:
  - name: chart-completion
    type: deficiency_digest
    every_hours: 24
    bylaws_days: 5
    email_via: mail
    notify: [him-hook]
    clinicians:
      D9: {email: house@example.org}
      "1234": {webhook: "https://hooks.example.org/smith"}
"""


def test_digest_per_clinician_counts_and_no_patient_data(h, tmp_path):
    path = tmp_path / "alerts.yaml"
    path.write_text(ALERTS)
    cfg = load_alerts(path)
    disp = build_dispatcher(cfg)
    house, smith = (
        digest_notifier_name("chart-completion", "D9"),
        digest_notifier_name("chart-completion", "1234"),
    )
    assert (
        disp.notifiers[house].to == ["house@example.org"] and disp.notifiers[house].host == "smtp.example.org"
    )
    assert disp.notifiers[smith].url == "https://hooks.example.org/smith"
    mailer = disp.notifiers[house]
    fakes = {n: Fake(n) for n in ("him-hook", house, smith)}
    disp.notifiers.update(fakes)
    clock = {"now": h.now + timedelta(days=10)}
    ev = Evaluator(h.db, cfg, clock=lambda: clock["now"], dispatcher=disp)
    try:
        sent = ev.evaluate()
        assert len(sent) == 2 and len(fakes["him-hook"].sent) == 2
        (to_house,) = fakes[house].sent
        (to_smith,) = fakes[smith].sent
        assert to_house["details"]["clinician_id"] == "D9" and to_house["details"]["open"] == 2
        assert to_house["details"]["by_bucket"] == {"0-7": 0, "8-14": 2, "15-30": 0, "over 30": 0}
        assert to_house["details"]["delinquent"] == 2
        assert to_house["link"] == "http://console.example.org/deficiencies?clinician=D9"
        assert to_smith["details"]["open"] == 1 and to_smith["status"] == "digest"
        for p in fakes["him-hook"].sent + [to_house, to_smith]:
            text = json.dumps(p)
            for datum in PATIENT_DATA:
                assert datum not in text, datum
        mail = mailer.message(to_house)
        assert "DIGEST" in mail["Subject"] and mail["To"] == "house@example.org"
        assert not any(datum in mail.as_string() for datum in PATIENT_DATA)
        clock["now"] += timedelta(hours=23)
        assert ev.evaluate() == []  # not yet due
        with h.db.connect() as conn:
            assert conn.execute(select(events.c.detail).where(events.c.kind == "deficiency_digest")).scalar()
        restarted = Evaluator(h.db, cfg, clock=lambda: clock["now"], dispatcher=disp)  # reads the events
        assert restarted.evaluate() == []
        clock["now"] += timedelta(hours=1)
        assert len(ev.evaluate()) == 2 and len(fakes[house].sent) == 2
        restarted.stop()
    finally:
        ev.stop()


def test_digest_config_problems(tmp_path):
    path = tmp_path / "alerts.yaml"
    path.write_text(
        "rules:\n  - name: d\n    type: deficiency_digest\n    clinicians:\n      D9: {email: house@example.org}\n"
        "      X: {email: a@b, webhook: 'https://h'}\n      Y: {webhook: 'ftp://x'}\n"
    )
    from interface.hl7.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        load_alerts(path)
    text = "\n".join(exc.value.problems)
    assert "exactly one of email, webhook" in text and "webhook must start with http" in text
    path.write_text(
        "rules:\n  - name: d\n    type: deficiency_digest\n    clinicians:\n      D9: {email: h@e.org}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_alerts(path)
    assert "email_via" in "\n".join(exc.value.problems)
