"""The console's message search and the actions on selected messages, and the same through
``/api/messages`` (seeded by the real engine: tests/test_pages.py's fixtures)."""

from __future__ import annotations

import re

from sqlalchemy import insert, select

from interface.store.chart_schema import patients
from interface.store.schema import work_items

from .test_pages import APP_NOW, admin, app, audit_rows, seeded  # noqa: F401

LIST = 'id="message-list"'


def ids(client, **params) -> list[int]:
    r = client.get("/messages", params=params)
    assert r.status_code == 200, r.text[:300]
    body = r.text.split(LIST, 1)[1]
    return [int(x) for x in re.findall(r'<td><a href="/messages/(\d+)">\d+</a></td>', body)]


def test_control_id_prefix_in_any_case_and_content_with_masked_snippets(admin, seeded):  # noqa: F811
    bad = seeded.messages["bad"]
    assert ids(admin, control_id="bad0") == [bad]
    assert ids(admin, control_id="BAD000") == [bad]
    assert ids(admin, control_id="bad0001") == [bad]
    page = admin.get("/messages", params={"text": "ADT_A01"}).text
    assert "<mark>" in page  # a hit in the header, marked
    page = admin.get("/messages", params={"text": "rivera"}).text  # the patient's name: masked
    assert bad in ids(admin, text="rivera")
    snippet_cells = re.findall(r'<td class="small snippet">(.*?)</td>', page, re.S)
    assert snippet_cells and all("RIVERA" not in c.upper() for c in snippet_cells)
    assert "match in a masked field" in page
    assert audit_rows(seeded.db, action="search", target_type="message")


def test_mrn_search_takes_in_the_mrns_merged_into_the_chart(admin, seeded):  # noqa: F811
    before = ids(admin, mrn="100001")
    assert seeded.messages["bad"] in before
    with seeded.db.begin() as conn:
        conn.execute(
            insert(patients).values(
                mrn="100002X", merged_into="100001", created_at=APP_NOW, updated_at=APP_NOW
            )
        )
        conn.execute(patients.update().where(patients.c.mrn == "100002").values(merged_into="100001"))
    after = ids(admin, mrn="100001")
    chen = ids(admin, mrn="100002")  # the merged-away MRN finds the whole chart too
    assert set(before) < set(after) and chen == after
    page = admin.get("/messages", params={"mrn": "100001"}).text
    assert 'id="merged-note"' in page and "100002" not in page.split('id="merged-note"')[1][:300]
    rows = audit_rows(seeded.db, action="search", target_type="message")
    assert "100001" not in (rows[-1].detail or "")


def test_export_selected_needs_a_reason_and_audits_each_message(admin, seeded):  # noqa: F811
    bad, other = seeded.messages["bad"], seeded.messages["no_mapping"]
    r = admin.post("/messages/export", data={"ids": [bad, other], "csrf_token": admin.csrf})
    assert r.status_code == 400
    r = admin.post(
        "/messages/export", data={"ids": [bad, other], "reason": "vendor ticket", "csrf_token": "x"}
    )
    assert r.status_code == 403
    r = admin.post(
        "/messages/export", data={"ids": [bad, other], "reason": "vendor ticket", "csrf_token": admin.csrf}
    )
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert r.content.count(b"MSH|") == 2 and b"BAD0001" in r.content and r.content.endswith(b"\r\n")
    rows = audit_rows(seeded.db, action="export")
    assert {x.target_id for x in rows} == {str(bad), str(other)} and rows[0].reason == "vendor ticket"


def test_reprocess_selected_queues_each_and_reports_refusals(admin, seeded):  # noqa: F811
    done = [m for m in ids(admin, channel="adt", status="processed")][:2]
    r = admin.post(
        "/messages/reprocess",
        data={"ids": done + [999999], "destination": "store", "reason": "replay", "csrf_token": admin.csrf},
        follow_redirects=False,
    )
    assert (
        r.status_code == 303 and "n=2" in r.headers["location"] and "failed=999999" in r.headers["location"]
    )
    with seeded.db.connect() as conn:
        queued = (
            conn.execute(
                select(work_items.c.message_id).where(
                    work_items.c.status == "pending", work_items.c.message_id.in_(done)
                )
            )
            .scalars()
            .all()
        )
    assert sorted(queued) == sorted(done)
    page = admin.get(r.headers["location"]).text
    assert "2 message(s) queued again" in page and "999999" in page
    assert len(audit_rows(seeded.db, action="reprocess", target_type="message")) == 2


def test_api_search_export_and_reprocess(admin, seeded):  # noqa: F811
    admin.headers["accept"] = "application/json"
    bad = seeded.messages["bad"]
    body = admin.get("/api/messages", params={"control_id": "bad00"}).json()
    assert [m["id"] for m in body["messages"]] == [bad]
    body = admin.get("/api/messages", params={"text": "rivera"}).json()
    hit = next(m for m in body["messages"] if m["id"] == bad)
    assert hit["snippet"] and "RIVERA" not in hit["snippet"].upper()
    body = admin.get("/api/messages", params={"text": "rivera", "reveal": "true", "reason": "check"}).json()
    hit = next(m for m in body["messages"] if m["id"] == bad)
    assert "<mark>RIVERA</mark>" in hit["snippet"]
    h = {"x-csrf-token": admin.csrf}
    assert admin.post("/api/messages/export", json={"ids": [bad]}, headers=h).status_code == 400
    r = admin.post("/api/messages/export", json={"ids": [bad], "reason": "ticket"}, headers=h)
    assert r.status_code == 200 and r.content.startswith(b"MSH|")
    r = admin.post(
        "/api/messages/reprocess", json={"ids": [bad, 999999], "destination": "store"}, headers=h
    ).json()
    assert list(r["refused"]) == ["999999"] or "999999" in r["refused"]


def test_diff_of_a_message_and_its_edited_copy_field_by_field(admin, seeded):  # noqa: F811
    from interface.desk import errorqueue

    from .test_pages import BAD_A08, FIXED_DOB

    edited = BAD_A08.replace("19840399", FIXED_DOB).replace("PV1|1|O", "PV1|1|I").encode()
    with seeded.db.begin() as conn:
        new = errorqueue.resubmit_item(
            conn, seeded.items["fix"], edited, user="ada", now=APP_NOW, reason="dob"
        )
    bad = seeded.messages["bad"]
    for mid in (new, bad):  # from either side: the original on the left, the copy on the right
        page = admin.get(f"/messages/{mid}", params={"tab": "diff"}).text
        table = page.split('id="diff"', 1)[1].split("</table>", 1)[0]
        pv1 = re.search(r'<tr class="diff-changed" id="diff-PV1-2">(.*?)</tr>', table, re.S).group(1)
        assert "Patient Class" in pv1 and ">O<" in pv1 and ">I<" in pv1
        dob = re.search(r'<tr class="diff-changed" id="diff-PID-7">(.*?)</tr>', table, re.S).group(1)
        assert "changed" in dob and FIXED_DOB not in dob and "19840399" not in dob  # masked
        assert 'id="diff-PID-8"' in table and 'class="diff-same" id="diff-PID-8"' in table
        assert f"message {bad}" in page and f"message {new}" in page
