"""The console's document page shows what the index says of a document: cancelled (content not
current, versions still readable), replaced (a link to the replacement), its namespace; a number
held in two namespaces needs ``?namespace=``."""

from __future__ import annotations

from sqlalchemy import select

from interface.store.schema import work_items
from tests.test_pages import admin, app, seeded  # noqa: F401  (fixtures)

T11 = (
    "MSH|^~\\&|TRANSCRIBE|HOSP|INTERFACE|HOSP|20261122090000||MDM^T11^MDM_T01|PG-T11|P|2.5.1\r"
    "EVN|T11|20261122090000\rPID|1||100001^^^HOSP^MR||DOE^JANE\rPV1|1|I|4W\r"
    "TXA|1|AD|TX|||||||||DOC-1005^TRANSCRIBE|||||AU|U|CA\r"
)


def _send(seeded, raw: str) -> None:  # noqa: F811
    """Send an MDM for Rivera (100001) once the seeded bad A08 no longer holds her queue."""
    from interface.desk import errorqueue
    from interface.store import workqueue
    from tests.test_pages import APP_NOW

    with seeded.db.begin() as conn:
        status = conn.execute(
            select(work_items.c.status).where(work_items.c.id == seeded.items["fix"])
        ).scalar()
        if status == "error":
            errorqueue.discard_item(
                conn, seeded.items["fix"], user="clerk", reason="seeded bad A08", now=APP_NOW
            )
    out = seeded.engine.receive(seeded.channels["mdm"], raw.encode())
    assert out.status in ("accepted", "processed"), out.text
    seeded.drain()


def test_cancelled_document_page_keeps_versions(admin, seeded):  # noqa: F811
    """After T11 the page says cancelled and shows no current text; ?version=1 still shows it."""
    assert "Blood cultures negative" in admin.get("/documents/DOC-1005").text
    _send(seeded, T11)
    page = admin.get("/documents/DOC-1005").text
    assert "Cancelled (T11)" in page and 'id="document-text"' not in page
    assert "TRANSCRIBE" in page  # the namespace (TXA-12.2)
    old = admin.get("/documents/DOC-1005", params={"version": 1}).text
    assert 'id="document-text"' in old and "Blood cultures negative" in old
    assert admin.get("/documents/DOC-1005/content").status_code == 404


def test_replaced_document_links_to_its_replacement(admin, seeded):  # noqa: F811
    """A T10 replacing DOC-1005: its page says obsolete and links to DOC-1007; DOC-1007 says Replaces."""
    from tests.test_pages import SAMPLES

    _send(seeded, (SAMPLES / "mdm" / "mdm_t10_replacement_content.hl7").read_text())
    old = admin.get("/documents/DOC-1005").text
    assert "Obsolete: replaced by" in old and 'href="/documents/DOC-1007?namespace=TRANSCRIBE"' in old
    assert "<dt>Replaces</dt>" in admin.get("/documents/DOC-1007").text


def test_ambiguous_number_needs_a_namespace(admin, seeded):  # noqa: F811
    """DOC-1005 in a second namespace: the number alone is 409, ?namespace= picks one."""
    _send(
        seeded,
        T11.replace("DOC-1005^TRANSCRIBE", "DOC-1005^OTHER")
        .replace("MDM^T11", "MDM^T02")
        .replace("PG-T11", "PG-T02")
        .replace("|CA\r", "|AV\r")
        + "OBX|1|TX|AD||Other text||||||F\r",
    )
    assert admin.get("/documents/DOC-1005").status_code == 409
    page = admin.get("/documents/DOC-1005", params={"namespace": "OTHER"}).text
    assert "Other text" in page and "Blood cultures" not in page
