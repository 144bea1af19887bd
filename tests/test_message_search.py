"""Message search in the store (``interface.store.message_search``) and its highlighted hits
(``interface.desk.search_snippets``), on SQLite and PostgreSQL: control ids by case-insensitive
prefix, the MRNs merged into a chart, full text on the real index, dates and combined filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, insert, text

from interface.desk import search_snippets
from interface.store import journal
from interface.store.chart_schema import patients
from interface.store.message_search import BATCH, Filters, chart_mrns, search, text_terms
from interface.store.schema import messages

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
COLS = [messages.c.id, messages.c.control_id, messages.c.patient_id, messages.c.status]


def hl7(
    control_id: str, mrn: str, *, type_: str = "ADT^A08", app: str = "LAB", fac: str = "NORTH", note: str = ""
) -> bytes:
    obx = f"\rOBX|1|TX|NOTE||{note}" if note else ""
    return (
        f"MSH|^~\\&|{app}|{fac}|EHR|HOSP|20260301080000||{type_}|{control_id}|P|2.5\r"
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JOHN||19700101|M\r"
        f"PV1|1|I|WARD^101^A{obx}"
    ).encode()


def add(conn, control_id, mrn, at=T0, status="accepted", **kw) -> int:
    raw = hl7(control_id, mrn, **kw)
    row = journal.JournalRow(
        channel="adt",
        received_at=at,
        peer="test",
        raw=raw,
        body_sha256="x",
        status=status,
        ack=None,
        ack_code=None,
        control_id=control_id,
        message_type=kw.get("type_", "ADT^A08"),
        sending_application=kw.get("app", "LAB"),
        sending_facility=kw.get("fac", "NORTH"),
        patient_id=mrn,
    )
    return journal.insert_rows(conn, [row], at)[0]


def merge(conn, prior: str, survivor: str) -> None:
    for mrn, into in ((survivor, None), (prior, survivor)):
        if conn.execute(text("SELECT 1 FROM patients WHERE mrn = :m"), {"m": mrn}).first() is None:
            conn.execute(insert(patients).values(mrn=mrn, merged_into=into, created_at=T0, updated_at=T0))
        elif into:
            conn.execute(text("UPDATE patients SET merged_into = :i WHERE mrn = :m"), {"i": into, "m": mrn})


def ids(conn, **kw) -> list[int]:
    return [r.id for r in search(conn, Filters(**kw), COLS).rows]


def test_control_id_is_a_case_insensitive_prefix(engine):
    with engine.begin() as conn:
        a = add(conn, "SMP0008", "100001")
        b = add(conn, "SMP0081", "100001")
        c = add(conn, "SMQ0001", "100001")
        d = add(conn, "smp9", "100001")
        assert ids(conn, control_id="SMP00") == [b, a]
        assert ids(conn, control_id="smp0008") == [a]
        assert ids(conn, control_id="smp") == [d, b, a]
        assert ids(conn, control_id="SMQ0001") == [c]
        assert ids(conn, control_id="SM_") == []  # LIKE wildcards are plain characters
        assert ids(conn, control_id="%") == []


def test_mrn_search_follows_merges_both_ways(engine):
    with engine.begin() as conn:
        old = add(conn, "C1", "200001")  # sent under the MRN later merged away
        older = add(conn, "C2", "200000")  # merged into 200001, which was then merged on
        new = add(conn, "C3", "200002")
        other = add(conn, "C4", "999999")
        merge(conn, "200000", "200001")
        merge(conn, "200001", "200002")
        assert chart_mrns(conn, "200002")[0] == "200002"
        assert set(chart_mrns(conn, "200002")) == {"200000", "200001", "200002"}
        assert ids(conn, mrn="200002") == [new, older, old]
        assert ids(conn, mrn="200000") == [new, older, old]  # a merged-away MRN finds its chart
        assert ids(conn, mrn="999999") == [other]
        assert ids(conn, mrn="555") == []


def test_full_text_finds_words_phrases_prefixes_and_highlights(engine):
    with engine.begin() as conn:
        a = add(conn, "T1", "300001", note="Patient reports chest pain since Tuesday")
        b = add(conn, "T2", "300002", note="Follow-up for pneumonia")
        c = add(conn, "T3", "300003", note="chest x-ray clear")
        assert ids(conn, text="chest") == [c, a]
        assert ids(conn, text="CHEST pain") == [a]
        assert ids(conn, text="pneum*") == [b]
        assert ids(conn, text="pneum") == []  # whole words unless a prefix*
        assert ids(conn, text="x-ray") == [c]
        assert ids(conn, text="WARD^101") == [c, b, a]
        assert ids(conn, text="nothinglikethis") == []
        page = search(conn, Filters(text="ward"), COLS + [messages.c.raw])
        assert page.terms == text_terms("ward")
        s = search_snippets.snippet(page.rows[0].raw.decode(), page.terms)
        assert "<mark>WARD</mark>" in s
        # clinical text (OBX-5) is masked for everyone until revealed: a hit inside it says so
        s = search_snippets.snippet(page.rows[-1].raw.decode(), text_terms("chest"))
        assert s == search_snippets.MASKED_HIT and "chest" not in s
        s = search_snippets.snippet(page.rows[-1].raw.decode(), text_terms("chest"), reveal=True)
        assert "<mark>chest</mark>" in s
        # the patient's name too
        assert (
            search_snippets.snippet(page.rows[0].raw.decode(), text_terms("doe"))
            == search_snippets.MASKED_HIT
        )


def test_snippet_escapes_html():
    raw = "MSH|^~\\&|<script>|F|||20260101||ADT^A01|X|P|2.5\rPV1|1|I|<b>ward</b>"
    s = search_snippets.snippet(raw, text_terms("ward"))
    assert "<script>" not in s and "&lt;script&gt;" in s and "<mark>ward</mark>" in s


def test_deleted_messages_leave_the_index(engine):
    with engine.begin() as conn:
        a = add(conn, "D1", "400001", note="retained")
        b = add(conn, "D2", "400001", note="retained")
        conn.execute(delete(messages).where(messages.c.id == a))
        assert ids(conn, text="retained") == [b]


def test_date_range_type_trigger_status_sender_and_combined(engine):
    with engine.begin() as conn:
        a = add(conn, "R1", "500001", at=T0, type_="ADT^A01", app="LAB", fac="NORTH")
        b = add(conn, "R2", "500001", at=T0 + timedelta(days=1), type_="ADT^A08", app="RAD", fac="NORTH")
        c = add(conn, "R3", "500002", at=T0 + timedelta(days=2), type_="ORU^R01", status="error", fac="SOUTH")
        day = timedelta(days=1)
        assert ids(conn, since=T0 + day) == [c, b]
        assert ids(conn, until=T0 + day) == [a]
        assert ids(conn, since=T0 + day, until=T0 + 2 * day) == [b]
        assert ids(conn, type="ADT") == [b, a]
        assert ids(conn, type="adt^a01") == [a]
        assert ids(conn, trigger="A08") == [b]
        assert ids(conn, type="ADT", trigger="A08") == [b]
        assert ids(conn, status="error") == [c]
        assert ids(conn, sending_application="RAD") == [b]
        assert ids(conn, sending_facility="SOUTH") == [c]
        assert ids(conn, sending_facility="NORTH", type="ADT", since=T0 + day) == [b]
        assert ids(conn, mrn="500001", text="ward", control_id="r") == [b, a]
        assert ids(conn, mrn="500001", text="ward", control_id="r2") == [b]
        assert ids(conn, text="ward", status="error", sending_facility="SOUTH") == [c]


def test_a_date_range_before_the_newest_messages_pages_newest_first(engine):
    """A range that ends before the newest messages (sorted on PostgreSQL, ``_sort_range``):
    the same pages, newest first, both ways, as without the sort."""
    with engine.begin() as conn:
        got = [add(conn, f"P{i}", "510001", at=T0 + timedelta(minutes=i), app="LAB") for i in range(12)]
        add(conn, "P-late", "510001", at=T0 + timedelta(days=3))  # newer than the range
        f = Filters(
            since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=10), sending_application="LAB"
        )
        first = search(conn, f, COLS, limit=3)
        assert [r.id for r in first.rows] == got[9:6:-1] and first.older == got[7]
        second = search(conn, f, COLS, before=first.older, limit=3)
        assert [r.id for r in second.rows] == got[6:3:-1] and second.newer == got[6]
        back = search(conn, f, COLS, after=second.newer, limit=3)
        assert [r.id for r in back.rows] == got[9:6:-1]
        last = search(conn, f, COLS, before=got[4], limit=3)
        assert [r.id for r in last.rows] == [got[3], got[2]] and last.older is None


@pytest.mark.parametrize("n", [BATCH + 30])
def test_content_search_pages_through_the_index(engine, n):
    with engine.begin() as conn:
        made = [add(conn, f"P{i}", "600001", note="common word" if i % 2 else "rare") for i in range(n)]
        wanted = [m for i, m in enumerate(made) if i % 2][::-1]
        seen, before = [], None
        while True:
            page = search(conn, Filters(text="common"), COLS, before=before, limit=100)
            seen += [r.id for r in page.rows]
            if page.older is None:
                break
            before = page.older
        assert seen == wanted
        newer = search(conn, Filters(text="common"), COLS, after=wanted[150], limit=100)
        assert [r.id for r in newer.rows] == wanted[50:150]
        assert newer.newer == wanted[50]


def test_content_with_selective_filters_pages_the_same_driven_or_walked(engine, monkeypatch):
    """A common word with selective filters: on PostgreSQL the filters drive (``_filters_drive``:
    their index newest first, each row probed in the full-text index); pages come out as the
    walk of the full-text index gives them, on both databases. (A small test journal has no
    statistics, so every word counts as rare there: the word is made common.)"""
    from interface.store import message_search as ms

    monkeypatch.setattr(ms, "_rare", lambda conn, terms: False)

    with engine.begin() as conn:
        want = [add(conn, f"F{i}", "600001", status="error", fac="EAST", note="chest pain") for i in range(5)]
        for i in range(5):
            add(conn, f"G{i}", "600002", status="processed", fac="EAST", note="chest pain")
        f = Filters(text="chest", status="error", sending_facility="EAST")
        conds, _ = ms.conditions(conn, f)
        driven = ms._filters_drive(conn, conds, text_terms("chest"))
        assert driven == (conn.dialect.name == "postgresql")
        first = search(conn, f, COLS, limit=2)
        second = search(conn, f, COLS, limit=2, before=first.older)
        third = search(conn, f, COLS, limit=2, before=second.older)
        got = [r.id for p in (first, second, third) for r in p.rows]
        assert got == sorted(want, reverse=True) and third.older is None
