"""Right patient, right chart: every page about one patient (chart, document, message, work
item) shows whose record it is (name, birth date, sex, MRN) and speaks words, not codes, with
the code kept on hover. The message page follows the message rule: masked until revealed."""

from __future__ import annotations

import re

import pytest

from tests.test_pages import TestClient, seeded, text_of, use_session  # noqa: F401 (fixture)
from tests.test_pages import app as app  # noqa: F401 (fixture)

RIVERA = ("RIVERA, ANA", "1984-03-12", "Female", "100001")
CHEN = ("CHEN, WEI", "1957-11-02", "Male", "100002")


@pytest.fixture
def clerk(app, seeded):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["accept"] = "text/html"
        c.csrf = use_session(c, "carl")
        yield c


def banner(html: str) -> str:
    found = re.search(r'<p class="patient-banner".*?</p>', html, re.S)
    assert found, "no patient banner on the page"
    return text_of(found.group(0))


def is_of(text: str, who: tuple, other: tuple) -> None:
    name, born, sex, mrn = who
    assert f"Patient: {name} · born {born} · {sex} · MRN {mrn}" in text, text
    assert other[0] not in text and other[1] not in text


def test_chart_page_banner_and_words(clerk):
    html = clerk.get("/patients/100001").text
    is_of(banner(html), RIVERA, CHEN)
    is_of(banner(clerk.get("/patients/100002").text), CHEN, RIVERA)
    demo = text_of(re.search(r'id="demographics".*?</dl>', html, re.S).group(0))
    assert "Sex Female" in demo
    visits = re.search(r'id="visits".*?</table>', html, re.S).group(0)
    assert "Inpatient" in text_of(visits) and "Admitted" in text_of(visits)
    assert re.search(r'<span title="[^"]+">Inpatient</span>', visits)  # the code (or table value) on hover
    docs = re.search(r'id="documents".*?</table>', html, re.S).group(0)
    assert "Discharge summary" in text_of(docs) and '<span title="DS">Discharge summary</span>' in docs
    assert "History and physical examination" in text_of(docs) and "Dictated" in text_of(docs)


def test_document_page_banner_and_words(clerk):
    html = clerk.get("/documents/DOC-3001").text
    is_of(banner(html), RIVERA, CHEN)
    assert '<span title="DS">Discharge summary</span>' in html
    for dd, word, code in (
        ("completion", "Dictated", "DI"),
        ("confidentiality", "Usual control", "U"),
        ("availability", "Available for patient care", "AV"),
    ):
        got = re.search(rf'<dd id="{dd}">(.*?)</dd>', html, re.S).group(1)
        assert got == f'<span title="{code}">{word}</span>', (dd, got)


def test_message_page_banner_names_the_chart_to_the_desk_masked_for_others(app, clerk, seeded):  # noqa: F811
    """A clerk sees whose record the message is about (the chart's patient, as on the chart page);
    an analyst sees the banner masked like the message until a reveal with a reason."""
    mid = seeded.messages["bad"]  # Rivera's A08
    is_of(banner(clerk.get(f"/messages/{mid}").text), RIVERA, CHEN)
    with TestClient(app, base_url="http://testserver") as analyst:
        analyst.headers["accept"] = "text/html"
        analyst.csrf = use_session(analyst, "ann")
        shown = banner(analyst.get(f"/messages/{mid}").text)
        assert "RIVERA" not in shown and "1984-03-12" not in shown and "100001" not in shown
        assert "Female" in shown and "****001" in shown and "reveal" in shown
        r = analyst.post(
            f"/messages/{mid}/reveal", data={"reason": "whose record?", "csrf_token": analyst.csrf}
        )
        assert r.status_code == 200
        is_of(banner(r.text), RIVERA, CHEN)


def test_message_naming_no_chart_says_so(clerk, seeded):  # noqa: F811
    raw = (
        "MSH|^~\\&|TRANSCRIBE|HOSP|INTERFACE|HOSP|20261121090000||MDM^T02^MDM_T02|NOCHART1|P|2.5.1\r"
        "EVN|T02|20261121090000\rPID|1||999999^^^HOSP^MR||NOBODY^KNOWN||19700101|M\rPV1|1|O\r"
        "TXA|1|PN|TX|20261121085000||||||||DOC-7777^TRANSCRIBE|||||DI|U|AV\r"
    )
    out = seeded.engine.receive(seeded.channels["mdm"], raw.encode())
    text = banner(clerk.get(f"/messages/{out.message_id}").text)
    assert "not in the chart" in text and "names no chart" in text
    assert "RIVERA" not in text and "CHEN" not in text


def test_item_page_banner_reason_and_status_in_words(clerk, seeded):  # noqa: F811
    html = clerk.get(f"/errors/{seeded.items['fix']}").text
    is_of(banner(html), RIVERA, CHEN)
    assert re.search(r'title="error">Failed: needs a clerk</span></h1>', html)
    reason = re.search(r'<dd id="reason">(.*?)</dd>', html, re.S).group(1)
    assert 'title="invalid_value"' in reason and "invalid_value" not in text_of(reason)
    html = clerk.get(f"/errors/{seeded.items['discard']}").text  # Nguyen's unknown document
    reason = re.search(r'<dd id="reason">(.*?)</dd>', html, re.S).group(1)
    assert 'title="unknown_document"' in reason and "unknown_document" not in text_of(reason)
    assert "NGUYEN, LINH" in banner(html) and "RIVERA" not in banner(html)
