"""The work-item page of the console for the identity desk: whose record it is (banner), the
comparison side by side with the differences marked (message masked until revealed), the
actions (file anyway, refile, send back) and the candidates of an unknown patient."""

from __future__ import annotations

import re

import pytest

from interface.desk import users
from interface.web.app import create_app
from tests.conftest import Clock
from tests.test_identity_desk import mismatch
from tests.test_identity_engine import doc, mdm
from tests.test_pages import PASSWORD, login, text_of
from tests.test_web_api import NOW, TestClient, fast_hashing  # noqa: F401 (fixture)


@pytest.fixture
def rig(engine, fast_hashing):  # noqa: F811
    hs, item = mismatch(engine)
    with engine.begin() as conn:
        users.add_user(conn, "clara", "clerk", PASSWORD, now=NOW)
    app = create_app(engine, channels=list(hs.channels.values()), clock=Clock(hs.now))
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["accept"] = "text/html"
        c.csrf = login(c, "clara")
        yield hs, item, c


def row(html: str, field: str, raw: bool = False) -> str:
    found = re.search(rf'<tr class="identity-(\w+)" data-field="{field}">(.*?)</tr>', html, re.S).group(0)
    return found if raw else text_of(found)


def test_the_page_shows_whose_record_and_the_differences(rig):
    hs, item, c = rig
    html = c.get(f"/errors/{item.id}").text
    banner = text_of(re.search(r'<p class="patient-banner".*?</p>', html, re.S).group(0))
    assert "RIVERA, ANA" in banner and "1984-03-12" in banner and "Female" in banner and "M100" in banner
    assert 'class="identity-mismatch" data-field="family"' in html
    assert 'class="identity-mismatch" data-field="birth_date"' in html
    assert "CHEN" not in row(html, "family") and "RIVERA" in row(html, "family")  # masked message side
    assert 'id="file-anyway"' in html and 'id="send-back"' in html and 'id="file-to"' in html
    r = c.post(f"/errors/{item.id}/reveal", data={"reason": "which patient?", "csrf_token": c.csrf})
    assert "CHEN" in row(r.text, "family") and "<mark>CHEN</mark>" in row(r.text, "family", raw=True)
    assert (
        "differs" in row(r.text, "sex") and "<mark>" not in row(r.text, "given", raw=True).split("</th>")[0]
    )


def test_file_anyway_from_the_page(rig):
    hs, item, c = rig
    r = c.post(f"/errors/{item.id}/file-anyway", data={"reason": "", "csrf_token": c.csrf})
    assert r.status_code == 400 and "Say why" in r.text
    r = c.post(
        f"/errors/{item.id}/file-anyway",
        data={"reason": "ward confirmed", "csrf_token": c.csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    hs.drain()
    assert doc(hs, "D1")["mrn"] == "M100"
    assert "Filed anyway by clara: ward confirmed" in text_of(c.get(f"/errors/{item.id}").text)


def test_refile_and_send_back_from_the_page(rig):
    hs, item, c = rig
    r = c.post(f"/errors/{item.id}/file", data={"mrn": "NOPE", "csrf_token": c.csrf})
    assert r.status_code == 409 and "no chart" in r.text
    r = c.post(f"/errors/{item.id}/file", data={"mrn": "M200", "csrf_token": c.csrf}, follow_redirects=False)
    assert r.status_code == 303
    hs.drain()
    assert doc(hs, "D1")["mrn"] == "M200"
    hs.send(mdm("D4", "M100", name="DOE^JOHN", dob="19990101", sex="M"), "mdm")
    hs.drain()
    (other,) = hs.items("error")
    r = c.post(f"/errors/{other.id}/send-back", data={"reason": "not ours", "csrf_token": c.csrf})
    assert r.status_code == 200 and [i.id for i in hs.items("discarded")] == [other.id]


def test_unknown_patient_candidates_on_the_page(rig):
    hs, item, c = rig
    hs.send(mdm("D8", "N1", name="CHEN^WEI", dob="19571102", sex="M"), "mdm")
    hs.drain()
    (held,) = hs.items("held")
    html = c.get(f"/errors/{held.id}").text
    assert "not in the chart" in text_of(html)
    section = re.search(r'<section aria-labelledby="cand-h".*?</section>', html, re.S).group(0)
    assert "M200" in section and "birth date: same" in section and "File to this chart" in section
    r = c.post(f"/errors/{held.id}/file", data={"mrn": "M200", "csrf_token": c.csrf}, follow_redirects=False)
    assert r.status_code == 303
    hs.drain()
    assert doc(hs, "D8")["mrn"] == "M200"


def test_an_analyst_sees_the_item_masked_and_no_candidate_charts(engine, fast_hashing):  # noqa: F811
    """An analyst works the error queue but not the identity desk: on the work-item page the
    chart's patient is masked like the message until a reveal with a reason, and no candidate
    charts (other patients' names and birth dates) are listed, nor the filing forms."""
    hs, item = mismatch(engine)
    with engine.begin() as conn:
        users.add_user(conn, "ana", "analyst", PASSWORD, now=NOW)
    hs.send(mdm("D8", "N1", name="CHEN^WEI", dob="19571102", sex="M"), "mdm")
    hs.drain()
    (held,) = hs.items("held")
    app = create_app(engine, channels=list(hs.channels.values()), clock=Clock(hs.now))
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["accept"] = "text/html"
        csrf = login(c, "ana")
        html = c.get(f"/errors/{item.id}").text
        banner = text_of(re.search(r'<p class="patient-banner".*?</p>', html, re.S).group(0))
        assert "RIVERA" not in banner and "1984-03-12" not in banner
        assert 'id="file-anyway"' not in html and 'id="file-to"' not in html
        r = c.post(f"/errors/{item.id}/file-anyway", data={"reason": "x", "csrf_token": csrf})
        assert r.status_code == 403
        r = c.post(f"/errors/{item.id}/reveal", data={"reason": "which patient?", "csrf_token": csrf})
        assert "RIVERA" in text_of(re.search(r'<p class="patient-banner".*?</p>', r.text, re.S).group(0))
        held_html = c.get(f"/errors/{held.id}").text
        assert "M200" not in held_html and "File to this chart" not in held_html
