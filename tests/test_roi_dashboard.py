"""The clerk's dashboard shows the release-of-information work by age: open requests in age
buckets (0-10, 11-20, 21-30, over 30 days since received; overdue counted apart) and the overdue
and soon-due requests with links, in words and without patient data; only to the roles that may
see ROI work."""

from __future__ import annotations

from datetime import date

from interface.desk import roi
from interface.rules import roi as rules
from tests.test_roi_desk import S, bearer, client, do, fast_hashing, h, new  # noqa: F401


def _row(i, age, left, overdue=False, status="received", rtype="patient"):
    return {
        "id": i,
        "status": status,
        "requester_type": rtype,
        "received_on": date(2026, 12, 10),
        "due_on": date(2026, 12, 20),
        "age_days": age,
        "days_left": left,
        "overdue": overdue,
    }


def test_aging_summary_buckets_and_attention():
    rows = [
        _row(1, 3, 27),
        _row(2, 10, 20),
        _row(3, 11, 19),
        _row(4, 28, 2),
        _row(5, 45, 15),
        _row(6, 31, -1, True),
        _row(7, 2, None, status="released"),
    ]
    s = rules.aging_summary(rows)
    assert s["open"] == 6 and s["overdue"] == 1
    assert [(b["label"], b["count"]) for b in s["buckets"]] == [
        ("0–10 days", 2),
        ("11–20 days", 1),
        ("21–30 days", 1),
        ("over 30 days", 1),
    ]
    assert [a["id"] for a in s["attention"]] == [6, 4]
    assert (
        s["attention"][0]["words"]
        == "Patient request, received, received 2026-12-10: 1 day overdue (due 2026-12-20)"
    )
    assert s["attention"][1]["words"].endswith("due in 2 days (2026-12-20)")


def test_the_dashboard_shows_roi_aging_to_clerks_not_to_analysts(client, h):
    late = new(h, received_on="2026-11-01")  # due 2026-12-01: 9 days overdue
    soon = new(h, received_on="2026-11-14")  # due 2026-12-14: in 4 days
    new(h, received_on="2026-12-08")
    gone = new(h, received_on="2026-11-02")
    do(h, roi.set_status, S, gone, "withdrawn", user="rel1", note="the patient came in person")
    for role in ("clerk", "release", "admin"):
        r = client.get("/", headers={**bearer(client, role), "accept": "text/html"})
        assert r.status_code == 200 and 'id="roi-aging"' in r.text, role
    text = r.text
    assert (
        "3 open request(s)" in text
        and '<strong class="bad" id="roi-overdue-count">1 overdue</strong>' in text
    )
    assert '<td data-bucket="0–10 days">1</td>' in text and '<td data-bucket="21–30 days">1</td>' in text
    assert (
        f'<a href="/roi/{late}">Request {late}</a>: Patient request, received, received 2026-11-01: 9 days overdue'
        in text
    )
    assert f'<a href="/roi/{soon}">Request {soon}</a>' in text and "due in 4 days (2026-12-14)" in text
    assert text.index(f"Request {late}<") < text.index(f"Request {soon}<")
    assert "100001" not in text and "RIVERA" not in text and "Ana Rivera" not in text
    analyst = client.get("/", headers={**bearer(client, "analyst"), "accept": "text/html"})
    assert analyst.status_code == 200 and 'id="roi-aging"' not in analyst.text
