"""The full-text index reads each message without its embedded payloads
(``interface.store.search_text``, ``messages.search_raw``, migration 0020), on SQLite and
PostgreSQL: an MDM's Base64 document is not indexed while every other field of it is, by every
way a row enters the journal, and an upgrade from 0019 re-indexes the messages already there."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, text, update

from interface.ops import cli
from interface.store import journal
from interface.store.db import make_engine
from interface.store.message_search import Filters, search
from interface.store.schema import messages
from interface.store.search_text import MIN_RUN, indexed_bytes

from .test_migrations import empty_url  # noqa: F401  (the fixture: a new database of the backend)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
# a Base64 payload with one word in it the tokenizers would index (between two "+")
_B64 = base64.b64encode(random.Random(7).randbytes(6000))
PAYLOAD = _B64[:4000] + b"+QuokkaZebra7+" + _B64[4000:]
PAYLOAD_WORD = "QuokkaZebra7"


def mdm(control_id: str, *, sep: bytes = b"\r", fs: str = "|", cs: str = "^") -> bytes:
    m = (
        f"MSH{fs}{cs}~\\&{fs}TRANSCRIBE{fs}HOSP{fs}EHR{fs}HOSP{fs}20260301080000{fs}{fs}MDM{cs}T02{fs}"
        f"{control_id}{fs}P{fs}2.5.1\r"
        f"PID{fs}1{fs}{fs}100001{cs}{cs}{cs}HOSP{cs}MR{fs}{fs}RIVERA{cs}ANA\r"
        f"TXA{fs}1{fs}CN{cs}Consultation{fs}AP{fs}{fs}{fs}{fs}{fs}{fs}5678{cs}JONES{cs}ALICE{fs}{fs}{fs}"
        f"DOC77{cs}TRANSCRIBE\r"
        f"OBX{fs}1{fs}ED{fs}CN{cs}Consultation{fs}{fs}HOSP{cs}AP{cs}PDF{cs}Base64{cs}"
    ).encode()
    m += PAYLOAD + f"{fs}{fs}{fs}{fs}{fs}F\rOBX{fs}2{fs}TX{fs}NOTE{fs}{fs}dictated by kookaburra".encode()
    return m.replace(b"\r", sep)


def _row(raw: bytes, control_id: str) -> journal.JournalRow:
    return journal.JournalRow(
        channel="mdm",
        received_at=T0,
        peer="test",
        raw=raw,
        body_sha256="x",
        status="accepted",
        ack=None,
        ack_code=None,
        control_id=control_id,
        message_type="MDM^T02",
    )


def ids(conn, words: str) -> list[int]:
    return [r.id for r in search(conn, Filters(text=words), [messages.c.id]).rows]


def test_ed_data_is_left_out_and_everything_else_kept():
    raw = mdm("C1")
    kept = indexed_bytes(raw)
    assert kept is not None and PAYLOAD[:40] not in kept and len(kept) < 600
    assert kept == raw.replace(b"^" + PAYLOAD, b"")  # only the data component, nothing else
    # the message's own delimiters and segment ends, whatever they are
    odd = mdm("C2", sep=b"\r\n", fs="#", cs="!")
    assert indexed_bytes(odd) == odd.replace(b"!" + PAYLOAD, b"")
    # every repetition of OBX-5
    rep = raw.replace(b"Base64^" + PAYLOAD, b"Base64^" + PAYLOAD + b"~HOSP^AP^PDF^Base64^" + PAYLOAD)
    assert PAYLOAD not in indexed_bytes(rep) and indexed_bytes(rep).count(b"HOSP^AP^PDF^Base64") == 2
    # a message without ED or long Base64: the index reads raw itself
    adt = b"MSH|^~\\&|A|B|C|D|20260301||ADT^A08|X|P|2.5\rPID|1||1^^^H^MR\rOBX|1|TX|N||" + b"word " * 400
    assert indexed_bytes(adt) is None
    assert indexed_bytes(b"") is None
    # Base64 sent some other way (not ED): a run of MIN_RUN or more is left out, a shorter one kept
    other = b"MSH|^~\\&|A|B|C|D|20260301||ZZZ^Z01|X|P|2.5\rZXX|1|" + PAYLOAD + b"|after"
    assert indexed_bytes(other) == b"MSH|^~\\&|A|B|C|D|20260301||ZZZ^Z01|X|P|2.5\rZXX|1||after"
    short = b"MSH|^~\\&|A|B|C|D|20260301||ZZZ^Z01|X|P|2.5\rZXX|1|" + PAYLOAD[: MIN_RUN - 1] + b"|after"
    assert indexed_bytes(short) is None


def test_an_mdm_payload_is_not_indexed_its_other_fields_are(engine):
    with engine.begin() as conn:
        # the engine's journal, a clerk's edited copy (a plain insert: the column's default)
        a = journal.insert_rows(conn, [_row(mdm("M1"), "M1")], T0)[0]
        b = conn.execute(
            insert(messages)
            .values(channel="mdm", received_at=T0, status="accepted", raw=mdm("M2"), body_sha256="y")
            .returning(messages.c.id)
        ).scalar_one()
        stored = conn.execute(select(messages.c.raw, messages.c.search_raw).where(messages.c.id == a)).one()
        assert bytes(stored.raw) == mdm("M1")  # the message itself is stored whole
        assert stored.search_raw is not None and PAYLOAD[:40] not in bytes(stored.search_raw)
        assert ids(conn, PAYLOAD_WORD) == [] and ids(conn, PAYLOAD_WORD.lower()) == []
        for words in ("Consultation", "JONES ALICE", "DOC77", "RIVERA", "kookaburra", "PDF Base64", "M1"):
            assert a in ids(conn, words), words
        assert ids(conn, "Consultation") == [b, a]
        # a changed raw is re-indexed with it (the update trigger), its payload still left out
        new = mdm("M1").replace(b"kookaburra", b"platypus")
        conn.execute(
            update(messages).where(messages.c.id == a).values(raw=new, search_raw=indexed_bytes(new))
        )
        assert ids(conn, "platypus") == [a] and ids(conn, "kookaburra") == [b]
        assert ids(conn, PAYLOAD_WORD) == []
        # and a deleted one leaves the index
        conn.execute(delete(messages).where(messages.c.id == a))
        assert ids(conn, "Consultation") == [b] and ids(conn, "platypus") == []


def test_upgrade_from_0019_reindexes_existing_messages_without_their_payloads(empty_url):  # noqa: F811
    assert cli.main(["db", "upgrade", "0019", "--db", empty_url]) == 0
    eng = make_engine(empty_url)
    insert_sql = text(
        "INSERT INTO messages (channel, received_at, status, raw, body_sha256) "
        "VALUES ('mdm', :at, 'accepted', :raw, 'x')"
    )
    adt = b"MSH|^~\\&|A|B|C|D|20260301||ADT^A08|X|P|2.5\rPID|1||1^^^H^MR\rPV1|1|I|WALLABY"
    try:
        with eng.begin() as conn:
            conn.execute(insert_sql, {"at": T0, "raw": mdm("OLD1")})
            conn.execute(insert_sql, {"at": T0, "raw": adt})
            assert len(ids(conn, PAYLOAD_WORD)) == 1  # 0014's index reads the payload
        assert cli.main(["db", "upgrade", "--db", empty_url]) == 0
        with eng.begin() as conn:
            old, plain = conn.execute(select(messages.c.id).order_by(messages.c.id)).scalars().all()
            assert ids(conn, PAYLOAD_WORD) == []
            assert ids(conn, "Consultation kookaburra") == [old]
            assert ids(conn, "WALLABY") == [plain]
            rows = dict(conn.execute(select(messages.c.id, messages.c.search_raw)).all())
            assert rows[plain] is None and PAYLOAD[:40] not in bytes(rows[old])
            conn.execute(delete(messages).where(messages.c.id == old))  # its index entry matches
            assert ids(conn, "Consultation") == []
            conn.execute(  # a new message (not raw SQL: the column's default)
                insert(messages).values(
                    channel="mdm", received_at=T0, status="accepted", raw=mdm("NEW1"), body_sha256="y"
                )
            )
            assert len(ids(conn, "Consultation")) == 1 and ids(conn, PAYLOAD_WORD) == []
        # and back: 0019 indexes raw again, the payload with it
        assert cli.main(["db", "downgrade", "0019", "--db", empty_url]) == 0
        with eng.begin() as conn:
            assert len(ids(conn, PAYLOAD_WORD)) == 1 and len(ids(conn, "Consultation")) == 1
    finally:
        eng.dispose()
