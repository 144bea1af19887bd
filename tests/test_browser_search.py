"""Message search and the viewer in a real browser (issue 19): an analyst in Debian's headless
Chromium finds messages by part of a control id in any case (``smp00`` finds ``SMP0008``), by
an MRN merged away by an A40 (the survivor's search lists the messages sent under the MRN merged
into it, and the merged-away MRN finds the same chart), by a word of the content (the hit
highlighted), reads coded values with their meanings (``M — Male``), and compares a failed
message with its edited copy field by field.

The engine is ``interface run`` in its own process on loopback, fed over real MLLP; the console a
separate web server on the same database (``tests.test_browser_channels``). Every wait is on what
the engine wrote, with a deadline. Screenshots: ``test-artifacts/search-*.png``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from interface.desk import errorqueue
from interface.engine.client import MLLPClient, parse_ack
from interface.store.chart_schema import patients
from interface.store.schema import messages, work_items
from tests.test_browser import TIMEOUT_MS, browser, log_in, shot  # noqa: F401  (fixture)
from tests.test_browser_channels import console, until  # noqa: F401  (fixture)
from tests.test_loopback import ROOT
from tests.test_web_api import fast_hashing  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

SAMPLES = ROOT / "sample_messages" / "adt"
# 100002 CHEN WEI (A28, A01 SMP0008), 100003 the duplicate (A04 SMP0009), A40: 100003 into 100002
FEED = ("01-a28-add-person-chen.hl7", "08-a01-admit-chen.hl7", "09-a04-register-duplicate-chen.hl7")
MERGE = "11-a40-merge-duplicate-chen.hl7"


def hl7(*segments: str) -> bytes:
    return "\r".join(segments).encode() + b"\r"


# sent under the duplicate MRN before the merge: a result with a note
RESULT = hl7(
    "MSH|^~\\&|REGADT|HOSP|INTERFACE|HOSP|20260310083000||ADT^A08^ADT_A01|BRS0001|P|2.5.1",
    "EVN|A08|20260310083000",
    "PID|1||100003^^^HOSP^MR||CHEN^WAY^^^^^L||19571102|M",
    "PV1|1|O",
    "OBX|1|ST|TROPONIN^Troponin I^L||0.02|ng/mL|||||F",
    "NTE|1||patient reports palpitations",
)
# fails its mapping (no 13th month): fixed and resent as an edited copy
BAD = hl7(
    "MSH|^~\\&|REGADT|HOSP|INTERFACE|HOSP|20260310100000||ADT^A08^ADT_A01|BRS0002|P|2.5.1",
    "EVN|A08|20260310100000",
    "PID|1||100002^^^HOSP^MR||CHEN^WEI^^^MR^^L||19571399|M",
    "PV1|1|O",
)


def send(port: int, frames: list[bytes]) -> None:
    with MLLPClient("127.0.0.1", port, timeout=20) as sender:
        for frame in frames:
            assert parse_ack(sender.send_raw(frame))[0] in ("AA", "CA")  # CA: enhanced mode (MSH-15)


def merged(engine) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(select(patients.c.merged_into).where(patients.c.mrn == "100003")).scalar()
            == "100002"
        )


def error_item(engine, control_id: str):
    with engine.connect() as conn:
        return conn.execute(
            select(work_items.c.id)
            .join(messages, messages.c.id == work_items.c.message_id)
            .where(messages.c.control_id == control_id, work_items.c.status == "error")
        ).scalar()


def listed(page) -> list[str]:
    """The control ids of the result list, top to bottom."""
    return [t.strip() for t in page.locator("#message-list tbody tr td:nth-child(6)").all_inner_texts()]


def test_find_messages_by_part_of_a_control_id_a_merged_mrn_and_a_word(console, engine, browser):  # noqa: F811
    proc, base = console
    port = proc.ports["adt"]
    send(port, [(SAMPLES / f).read_bytes() for f in FEED] + [RESULT])
    send(port, [(SAMPLES / MERGE).read_bytes(), BAD])
    until("the engine to merge 100003 into 100002", lambda: merged(engine))
    item = until("the bad message in the error queue", lambda: error_item(engine, "BRS0002"))

    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    log_in(page, base, "ana", "/messages")

    # 1. part of a control id, in lower case: a prefix match in any case
    page.get_by_label("Control ID").fill("smp00")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*control_id=smp00.*"))
    ids = listed(page)
    assert "SMP0008" in ids and set(ids) == {"SMP0001", "SMP0008", "SMP0009", "SMP0011"}, ids
    shot(page, "search-01-control-id-prefix")
    page.get_by_label("Control ID").fill("smp0008")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*control_id=smp0008.*"))
    assert listed(page) == ["SMP0008"]

    # 2. the survivor's MRN lists the messages sent under the MRN merged into it by the A40
    page.get_by_label("Control ID").fill("")
    page.get_by_label("MRN").fill("100002")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*mrn=100002.*"))
    survivor = listed(page)
    assert {"SMP0009", "BRS0001"} <= set(survivor)  # sent under 100003
    assert {"SMP0001", "SMP0008", "SMP0011", "BRS0002"} <= set(survivor)
    note = page.locator("#merged-note")
    assert "1 MRN(s) merged into it" in note.inner_text() and "100003" not in note.inner_text()  # masked
    shot(page, "search-02-merged-mrn")
    page.get_by_label("MRN").fill("100003")  # the merged-away MRN finds the whole chart too
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*mrn=100003.*"))
    assert sorted(listed(page)) == sorted(survivor)

    # 3. a word of the content: the result's OBX, its hit highlighted; a word only in the note
    #    (NTE-3, masked like all clinical text) is found but not shown
    page.get_by_label("MRN").fill("")
    page.get_by_label("Content").fill("troponin")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*text=troponin.*"))
    assert listed(page) == ["BRS0001"]
    hit = page.locator("#message-list td.snippet mark")
    assert hit.first.is_visible() and hit.first.inner_text() == "TROPONIN"
    assert "Troponin I" in page.locator("#message-list td.snippet").inner_text()
    shot(page, "search-03-content-highlighted")
    page.get_by_label("Content").fill("palpitations")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*text=palpitations.*"))
    assert listed(page) == ["BRS0001"]
    assert page.locator("#message-list td.snippet").inner_text() == "match in a masked field"
    assert "palpitations" not in page.locator("main").inner_text()

    # 4. the viewer: coded values with their meanings from the HL7 tables
    page.get_by_label("Content").fill("troponin")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*text=troponin.*"))
    page.locator("#message-list tbody tr").first.get_by_role("link").first.click()
    page.wait_for_url(re.compile(r".*/messages/\d+$"))
    assert page.locator("tr#PID-8 .code-meaning").inner_text() == "M — Male"
    assert page.locator("tr#PV1-2 .code-meaning").inner_text() == "O — Outpatient"
    assert page.locator("tr#OBX-11 .code-meaning").inner_text() == "F — Final result"
    assert page.locator("tr#OBX-2 .code-meaning").inner_text() == "ST — String data"
    assert page.locator("tr#MSH-9 .code-meaning").all_inner_texts() == [
        "ADT — ADT message",
        "A08 — Update patient information",
    ]
    shot(page, "search-04-code-meanings")

    # 5. the failed message fixed and resent as an edited copy: the two side by side
    with engine.begin() as conn:
        copy = errorqueue.resubmit_item(
            conn,
            item,
            BAD.replace(b"19571399", b"19571102").replace(b"PV1|1|O", b"PV1|1|I"),
            user="ana",
            now=datetime.now(timezone.utc),
            reason="birth date",
        )
    page.goto(f"{base}/messages/{copy}")
    page.get_by_role("link", name="Changes").click()
    page.wait_for_url(f"{base}/messages/{copy}?tab=diff")
    table = page.locator("table#diff")
    assert table.is_visible()
    pv1 = page.locator("#diff-PV1-2")
    assert pv1.get_attribute("class") == "diff-changed" and "Patient Class" in pv1.inner_text()
    assert pv1.locator("td.diff-old").inner_text() == "O" and pv1.locator("td.diff-new").inner_text() == "I"
    dob = page.locator("#diff-PID-7")
    assert "changed" in dob.inner_text() and "19571102" not in dob.inner_text()  # masked
    assert page.locator("#diff-PID-8").get_attribute("class") == "diff-same"
    assert page.locator("#diff-MSH-10").get_attribute("class") == "diff-same"
    shot(page, "search-05-diff")
    assert not problems, problems
